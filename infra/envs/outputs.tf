# Every environment root links this file (envs/<env>/outputs.tf): the outputs are the same for each.
# What deployments/ and helm/ take from this environment: infra/render_env.py turns
# `terraform output -json` into the drugrepo.env block and the Helm values file.
output "drugrepo_env" {
  value = module.platform.drugrepo_env
}

output "helm_values" {
  value = module.platform.helm_values
}

output "service_account_roles" {
  value = module.platform.service_account_roles
}

output "namespace" {
  value = module.platform.namespace
}

output "cluster_name" {
  value = module.platform.cluster_name
}

output "databases" {
  value = module.platform.databases
}

output "database_secret_arn" {
  value = module.platform.database_secret_arn
}

output "mlflow_artifacts_destination" {
  value = module.platform.mlflow_artifacts_destination
}
