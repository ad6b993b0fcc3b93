# prod: a NAT gateway per zone, Multi-AZ PostgreSQL, a replicated cache, and a GPU node pool for
# the GPU steps of helm/values-prod.yaml (pool limit 4: at most four GPU nodes).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }
  backend "s3" {
    bucket       = "drugrepo-prod-tfstate"
    key          = "infra/prod/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    use_lockfile = true
  }
}

locals {
  env    = "prod"
  region = "eu-west-1"
}

provider "aws" {
  region = local.region
  default_tags {
    tags = { Project = "drugrepo", Environment = local.env, ManagedBy = "terraform" }
  }
}

module "platform" {
  source             = "../../modules/platform"
  env                = local.env
  region             = local.region
  azs                = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  cidr               = "10.2.0.0/16"
  enable_nat_gateway = true
  single_nat_gateway = false
  kubernetes_version = "1.33"
  cpu_pool           = { instance_type = "m7i.xlarge", min_size = 3, desired_size = 3, max_size = 10 }
  enable_gpu_pool    = true
  gpu_pool           = { instance_type = "g6.2xlarge", max_size = 4 }
  database = {
    instance_class           = "db.m7g.large"
    allocated_storage_gb     = 100
    max_allocated_storage_gb = 500
    multi_az                 = true
    backup_retention_days    = 14
    deletion_protection      = true
  }
  cache                   = { node_type = "cache.m7g.large", num_nodes = 2 }
  log_retention_days      = 365
  noncurrent_version_days = 90
}
