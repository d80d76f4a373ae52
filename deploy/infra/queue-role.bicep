// One role on each of a list of queues (queue scope, not namespace scope).
param namespaceName string
param queueNames array
param principalId string
param roleDefinitionId string

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = [
  for queueName in queueNames: {
    parent: serviceBus
    name: queueName
  }
]

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, index) in queueNames: {
    name: guid(queues[index].id, principalId, roleDefinitionId)
    scope: queues[index]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    }
  }
]
