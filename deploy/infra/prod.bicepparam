using 'main.bicep'

param environment = 'prod'
param serviceBusNamespaceName = 'sb-qscore-prod'
param serviceBusSku = 'Premium'
param queueSuffix = ''
param storageAccountName = 'stqscoreprod'
// az aks show -g <rg> -n <cluster> --query oidcIssuerProfile.issuerUrl -o tsv
param aksOidcIssuerUrl = readEnvironmentVariable('AKS_OIDC_ISSUER')
