using 'main.bicep'

param environment = 'dev'
param serviceBusNamespaceName = 'sb-qscore-nonprod'
param serviceBusSku = 'Standard'
param queueSuffix = '-dev'
param storageAccountName = 'stqscoredev'
// az aks show -g <rg> -n <cluster> --query oidcIssuerProfile.issuerUrl -o tsv
param aksOidcIssuerUrl = readEnvironmentVariable('AKS_OIDC_ISSUER')
