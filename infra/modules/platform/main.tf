# One environment: the six modules wired together, named drugrepo-<env>, and the outputs that the
# deployments (deployments/<env>/drugrepo.env, helm/values-<env>.yaml) take from it.
locals {
  name      = "drugrepo-${var.env}"
  namespace = "drugrepo-${var.env}"
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

# The environment's key: bucket, database, cache, Kubernetes secrets and logs.
resource "aws_kms_key" "this" {
  description             = "${local.name} data, secrets and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = { Name = local.name }
}

module "network" {
  source              = "../network"
  name                = local.name
  region              = var.region
  cidr                = var.cidr
  azs                 = var.azs
  enable_nat_gateway  = var.enable_nat_gateway
  single_nat_gateway  = var.single_nat_gateway
  interface_endpoints = var.interface_endpoints
  kms_key_arn         = aws_kms_key.this.arn
  log_retention_days  = var.log_retention_days
}

module "cluster" {
  source               = "../cluster"
  name                 = local.name
  kubernetes_version   = var.kubernetes_version
  subnet_ids           = module.network.private_subnet_ids
  kms_key_arn          = aws_kms_key.this.arn
  log_retention_days   = var.log_retention_days
  cpu_pool             = var.cpu_pool
  enable_gpu_pool      = var.enable_gpu_pool
  gpu_pool             = var.gpu_pool
  admin_principal_arns = var.admin_principal_arns
}

module "storage" {
  source                  = "../storage"
  name                    = local.name
  kms_key_arn             = aws_kms_key.this.arn
  noncurrent_version_days = var.noncurrent_version_days
}

module "database" {
  source                   = "../database"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.cluster.security_group_id
  kms_key_arn              = aws_kms_key.this.arn
  instance_class           = var.database.instance_class
  allocated_storage_gb     = var.database.allocated_storage_gb
  max_allocated_storage_gb = var.database.max_allocated_storage_gb
  multi_az                 = var.database.multi_az
  backup_retention_days    = var.database.backup_retention_days
  deletion_protection      = var.database.deletion_protection
  log_retention_days       = var.log_retention_days
}

module "cache" {
  source                   = "../cache"
  name                     = local.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.cluster.security_group_id
  kms_key_arn              = aws_kms_key.this.arn
  node_type                = var.cache.node_type
  num_nodes                = var.cache.num_nodes
}

# Service accounts of the namespace: `dagster` (the chart's, global.serviceAccountName in
# helm/values.yaml: webserver, daemon, code locations, run and step pods), the prediction API's and
# the MLflow server's.
module "identity" {
  source            = "../identity"
  name              = local.name
  namespace         = local.namespace
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer       = module.cluster.oidc_issuer
  bucket_arn        = module.storage.bucket_arn
  kms_key_arn       = aws_kms_key.this.arn
  service_accounts = {
    dagster = {
      service_account = "dagster"
      read_prefixes   = [module.storage.prefixes.landing, module.storage.prefixes.requests]
      write_prefixes  = [module.storage.prefixes.assets, module.storage.prefixes.compute_logs, module.storage.prefixes.mlflow]
    }
    api = {
      service_account = "drugrepo-api"
      read_prefixes   = [module.storage.prefixes.mlflow]
      write_prefixes  = [module.storage.prefixes.requests]
    }
    mlflow = {
      service_account = "mlflow"
      read_prefixes   = []
      write_prefixes  = [module.storage.prefixes.mlflow]
    }
  }
}
