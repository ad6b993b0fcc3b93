output "drugrepo_env" {
  description = "The settings of deployments/<env>/drugrepo.env that come from this environment (infra/render_env.py writes them)."
  value = {
    AWS_DEFAULT_REGION       = var.region
    DRUGREPO_STORAGE_URI     = module.storage.uris.assets
    DRUGREPO_SOURCE_ROOT     = module.storage.uris.landing
    DRUGREPO_REQUEST_LOG_DIR = module.storage.uris.requests
    DRUGREPO_REDIS_URL       = module.cache.url
    DAGSTER_PG_HOST          = module.database.address
    DAGSTER_PG_PORT          = tostring(module.database.port)
    DAGSTER_PG_DB            = module.database.databases[0]
    DAGSTER_PG_USERNAME      = module.database.username
  }
}

output "helm_values" {
  description = "Values of the Dagster chart that come from this environment: a values file layered over helm/values-<env>.yaml."
  value = {
    postgresql = {
      postgresqlHost     = module.database.address
      postgresqlUsername = module.database.username
      postgresqlDatabase = module.database.databases[0]
      service            = { port = module.database.port }
    }
    computeLogManager = {
      config = {
        s3ComputeLogManager = {
          bucket = module.storage.bucket
          prefix = module.storage.prefixes.compute_logs
        }
      }
    }
    runLauncher = {
      config = { k8sRunLauncher = { jobNamespace = local.namespace } }
    }
    serviceAccount = {
      annotations = { "eks.amazonaws.com/role-arn" = module.identity.role_arns["dagster"] }
    }
  }
}

output "service_account_roles" {
  description = "Service account => IAM role ARN, for the eks.amazonaws.com/role-arn annotation of each."
  value       = module.identity.role_arns
}

output "namespace" {
  value = local.namespace
}

output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this>."
  value       = module.cluster.name
}

output "databases" {
  description = "Connection URL of each database without its password (Secrets Manager: database_secret_arn)."
  value = {
    for db in module.database.databases :
    db => "postgresql://${module.database.username}@${module.database.address}:${module.database.port}/${db}"
  }
}

output "database_secret_arn" {
  value = module.database.master_user_secret_arn
}

output "mlflow_artifacts_destination" {
  description = "mlflow server --artifacts-destination."
  value       = module.storage.uris.mlflow
}

output "nat_gateway_count" {
  value = module.network.nat_gateway_count
}
