using 'main.bicep'

param environment = 'qa'
param serviceBusNamespaceName = 'sb-qscore-nonprod'
param serviceBusSku = 'Standard'
param queueSuffix = '-qa'
param storageAccountName = 'stqscoreqa'
// az aks show -g <rg> -n <cluster> --query oidcIssuerProfile.issuerUrl -o tsv
param aksOidcIssuerUrl = readEnvironmentVariable('AKS_OIDC_ISSUER')
