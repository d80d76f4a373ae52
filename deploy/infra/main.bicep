// Azure side of one qscore environment: Service Bus namespace and queues, the Durable
// Functions storage account, three user-assigned identities federated with the AKS
// cluster's OIDC issuer, and least-privilege role assignments.
//   az deployment group create -g <rg> -f deploy/infra/main.bicep -p deploy/infra/<env>.bicepparam
// dev and qa share one Standard namespace (queue names carry the environment suffix);
// prod has its own Premium namespace.

targetScope = 'resourceGroup'

@description('Environment name: dev, qa or prod.')
@allowed(['dev', 'qa', 'prod'])
param environment string

param location string = resourceGroup().location

@description('Service Bus namespace name (shared by dev and qa).')
param serviceBusNamespaceName string

@allowed(['Standard', 'Premium'])
param serviceBusSku string = 'Standard'

@description('Appended to queue names ("-dev", "-qa"; empty in prod).')
param queueSuffix string = ''

@description('Storage account for the Functions app and its Durable task hub.')
param storageAccountName string

@description('The AKS cluster OIDC issuer URL (az aks show --query oidcIssuerProfile.issuerUrl).')
param aksOidcIssuerUrl string

@description('Namespace the overlay deploys into (qscore-<environment>).')
param kubernetesNamespace string = 'qscore-${environment}'

@description('Namespace and service account of the KEDA operator (AKS add-on: kube-system/keda-operator).')
param kedaNamespace string = 'kube-system'
param kedaServiceAccount string = 'keda-operator'

var roles = {
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataReader: '19e7f393-937e-4f77-808e-94535e297925'
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: serviceBusNamespaceName
  location: location
  sku: {
    name: serviceBusSku
    tier: serviceBusSku
    capacity: serviceBusSku == 'Premium' ? 1 : null
  }
  properties: {
    // Entra ID only: no SAS keys, so no connection string can leak.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

var requestQueueProperties = {
  // The worker renews locks for long batches; 30 s bounds redelivery after a crash.
  lockDuration: 'PT30S'
  maxDeliveryCount: 8
  deadLetteringOnMessageExpiration: true
  defaultMessageTimeToLive: 'P1D'
  requiresSession: false
  enablePartitioning: false
}

resource requestQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-requests${queueSuffix}'
  properties: requestQueueProperties
}

// The high-priority lane (issue 16): same settings; workers receive from both, high first.
resource highRequestQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-requests-high${queueSuffix}'
  properties: requestQueueProperties
}

resource functionsRequestQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-requests-functions${queueSuffix}'
  properties: requestQueueProperties
}

resource longRequestQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-requests-long${queueSuffix}'
  properties: union(requestQueueProperties, {
    // Minutes-long scoring: the Job renews the lock; 5 min (the maximum) limits renew traffic.
    lockDuration: 'PT5M'
    maxDeliveryCount: 5
  })
}

resource replyQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-replies${queueSuffix}'
  properties: {
    // Producers receive their replies by session id = their reply-to session.
    requiresSession: true
    lockDuration: 'PT30S'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'PT1H'
  }
}

// The Functions app records each request it could not answer here (its messages are already
// completed on the request queue, so they cannot be dead-lettered there); read with
// `qscore dead-letters list --failures`. Kept until an operator resubmits or purges them.
resource failuresQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: 'scoring-failures${queueSuffix}'
  properties: {
    lockDuration: 'PT30S'
    maxDeliveryCount: 10
    requiresSession: false
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
  }
}

// Claim-check (request/reply bodies too large for the queue) and the interaction log live in
// Blob containers of the same account. Claim blobs are deleted once answered or read; the
// lifecycle rule deletes any left behind (a dead-lettered request's, a crashed producer's).
@description('Days before a claim-check blob left behind is deleted.')
param claimCheckRetentionDays int = 1

@description('Days the interaction log is kept (drift and flight reports read it).')
param interactionLogRetentionDays int = 90

@description('Days before a Functions payload document left behind (a crashed attempt, a Failed orchestration) is deleted.')
param payloadRetentionDays int = 7

var claimCheckContainer = 'qscore-claims'
var interactionLogContainer = 'qscore-interactions'
// Ground truth the labelling process drops; the model-quality CronJob (worker identity) reads it.
var feedbackContainer = 'qscore-feedback'
// The Functions app's payload store (functions/payload_store.py): batches, prepared groups and
// replies by reference, read by whichever replica runs the next activity. Each run deletes its
// own documents; the lifecycle rule deletes what a crashed or Failed run left.
var payloadContainer = 'qscore-payloads'

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource claimsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: claimCheckContainer
  properties: { publicAccess: 'None' }
}

resource interactionsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: interactionLogContainer
  properties: { publicAccess: 'None' }
}

resource feedbackContainerResource 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: feedbackContainer
  properties: { publicAccess: 'None' }
}

resource payloadsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: payloadContainer
  properties: { publicAccess: 'None' }
}

resource blobLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'claim-check-safety-net'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: [ 'blockBlob' ], prefixMatch: [ '${claimCheckContainer}/' ] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: claimCheckRetentionDays } } }
          }
        }
        {
          name: 'functions-payload-safety-net'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: [ 'blockBlob' ], prefixMatch: [ '${payloadContainer}/payloads/' ] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: payloadRetentionDays } } }
          }
        }
        {
          name: 'interaction-log-retention'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: [ 'blockBlob' ], prefixMatch: [ '${interactionLogContainer}/' ] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: interactionLogRetentionDays } } }
          }
        }
      ]
    }
  }
}

resource workerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-qscore-worker-${environment}'
  location: location
}

resource functionsIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-qscore-functions-${environment}'
  location: location
}

resource scalerIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-qscore-scaler-${environment}'
  location: location
}

resource workerFederation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: workerIdentity
  name: 'aks-${kubernetesNamespace}-qscore-worker'
  properties: {
    issuer: aksOidcIssuerUrl
    subject: 'system:serviceaccount:${kubernetesNamespace}:qscore-worker'
    audiences: ['api://AzureADTokenExchange']
  }
}

resource functionsFederation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: functionsIdentity
  name: 'aks-${kubernetesNamespace}-qscore-functions'
  properties: {
    issuer: aksOidcIssuerUrl
    subject: 'system:serviceaccount:${kubernetesNamespace}:qscore-functions'
    audiences: ['api://AzureADTokenExchange']
  }
}

// The KEDA operator's service account presents this identity (TriggerAuthentication identityId).
resource scalerFederation 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials@2023-01-31' = {
  parent: scalerIdentity
  name: 'aks-keda-operator-${environment}'
  properties: {
    issuer: aksOidcIssuerUrl
    subject: 'system:serviceaccount:${kedaNamespace}:${kedaServiceAccount}'
    audiences: ['api://AzureADTokenExchange']
  }
}

// Workers: receive requests (the worker queues: both lanes and the long one), send replies. Nothing else.
module workerReceivesRequests 'queue-role.bicep' = {
  name: 'worker-receive-${environment}'
  params: {
    namespaceName: serviceBus.name
    queueNames: [requestQueue.name, highRequestQueue.name, longRequestQueue.name]
    principalId: workerIdentity.properties.principalId
    roleDefinitionId: roles.serviceBusDataReceiver
  }
}

module workerSendsReplies 'queue-role.bicep' = {
  name: 'worker-send-${environment}'
  params: {
    namespaceName: serviceBus.name
    queueNames: [replyQueue.name]
    principalId: workerIdentity.properties.principalId
    roleDefinitionId: roles.serviceBusDataSender
  }
}

// Functions app: receive its own request queue, send replies; task hub storage.
module functionsReceivesRequests 'queue-role.bicep' = {
  name: 'functions-receive-${environment}'
  params: {
    namespaceName: serviceBus.name
    queueNames: [functionsRequestQueue.name]
    principalId: functionsIdentity.properties.principalId
    roleDefinitionId: roles.serviceBusDataReceiver
  }
}

module functionsSendsReplies 'queue-role.bicep' = {
  name: 'functions-send-${environment}'
  params: {
    namespaceName: serviceBus.name
    queueNames: [replyQueue.name, failuresQueue.name]
    principalId: functionsIdentity.properties.principalId
    roleDefinitionId: roles.serviceBusDataSender
  }
}

// KEDA reads queue runtime properties (message counts), which needs Manage rights: Data
// Owner, scoped to the scaled queues only, held by the scaler identity and no workload.
module scalerReadsQueueLengths 'queue-role.bicep' = {
  name: 'scaler-owner-${environment}'
  params: {
    namespaceName: serviceBus.name
    queueNames: [requestQueue.name, highRequestQueue.name, functionsRequestQueue.name, longRequestQueue.name]
    principalId: scalerIdentity.properties.principalId
    roleDefinitionId: roles.serviceBusDataOwner
  }
}

// Worker: read and delete claim-check blobs, write the interaction log (each container only).
module workerClaims 'blob-container-role.bicep' = {
  name: 'worker-claims'
  dependsOn: [ claimsContainer ]
  params: {
    storageAccountName: storage.name
    containerName: claimCheckContainer
    principalId: workerIdentity.properties.principalId
    roleDefinitionId: roles.storageBlobDataContributor
  }
}

module workerInteractions 'blob-container-role.bicep' = {
  name: 'worker-interactions'
  dependsOn: [ interactionsContainer ]
  params: {
    storageAccountName: storage.name
    containerName: interactionLogContainer
    principalId: workerIdentity.properties.principalId
    roleDefinitionId: roles.storageBlobDataContributor
  }
}

// Worker identity, as the model-quality CronJob: read the ground truth (container only).
module workerFeedback 'blob-container-role.bicep' = {
  name: 'worker-feedback'
  dependsOn: [ feedbackContainerResource ]
  params: {
    storageAccountName: storage.name
    containerName: feedbackContainer
    principalId: workerIdentity.properties.principalId
    roleDefinitionId: roles.storageBlobDataReader
  }
}

// Functions app: each Blob container it uses, and only those (container scope): its payload
// store, the claim checks and the interaction log (it scores like the worker), the Durable task
// hub's lease and large-message containers, and the Functions host's own containers (host
// locks, keys). They are created here so the app never needs the right to create containers
// in the account. Queues and tables (the task hub's control/work-item queues, history and
// instance tables) stay at account scope: Durable creates and names them per partition.
@description('The Durable task hub: the overlay\'s TASK_HUB (host.json hubName).')
param taskHubName string = 'qscore${environment}'

var functionsBlobContainers = [
  payloadContainer
  claimCheckContainer
  interactionLogContainer
  '${toLower(taskHubName)}-leases'
  '${toLower(taskHubName)}-largemessages'
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

resource functionsContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in [ '${toLower(taskHubName)}-leases', '${toLower(taskHubName)}-largemessages', 'azure-webjobs-hosts', 'azure-webjobs-secrets' ]: {
    parent: blobService
    name: name
    properties: { publicAccess: 'None' }
  }
]

module functionsBlobAccess 'blob-container-role.bicep' = [
  for name in functionsBlobContainers: {
    name: 'functions-blob-${name}'
    dependsOn: [ claimsContainer, interactionsContainer, payloadsContainer, functionsContainers ]
    params: {
      storageAccountName: storage.name
      containerName: name
      principalId: functionsIdentity.properties.principalId
      roleDefinitionId: roles.storageBlobDataContributor
    }
  }
]

var functionsStorageRoles = [
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource functionsStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in functionsStorageRoles: {
    name: guid(storage.id, functionsIdentity.id, role)
    scope: storage
    properties: {
      principalId: functionsIdentity.properties.principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource scalerStorageQueueRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, scalerIdentity.id, roles.storageQueueDataReader)
  scope: storage
  properties: {
    principalId: scalerIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataReader)
  }
}

// Values for the overlay's qscore-environment ConfigMap.
output SERVICEBUS_NAMESPACE_NAME string = serviceBus.name
output REQUEST_QUEUE string = requestQueue.name
output REPLY_QUEUE string = replyQueue.name
output LONG_REQUEST_QUEUE string = longRequestQueue.name
output FUNCTIONS_REQUEST_QUEUE string = functionsRequestQueue.name
output FAILURES_QUEUE string = failuresQueue.name
output STORAGE_ACCOUNT_NAME string = storage.name
output CLAIM_CHECK_CONTAINER string = claimsContainer.name
output INTERACTION_LOG_CONTAINER string = interactionsContainer.name
output FEEDBACK_CONTAINER string = feedbackContainerResource.name
output PAYLOAD_CONTAINER string = payloadsContainer.name
output WORKER_CLIENT_ID string = workerIdentity.properties.clientId
output FUNCTIONS_CLIENT_ID string = functionsIdentity.properties.clientId
output SCALER_CLIENT_ID string = scalerIdentity.properties.clientId
