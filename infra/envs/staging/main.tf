# staging: production's shape at a smaller size. One NAT gateway for both zones, a GPU node pool for
# the GPU steps of helm/values-staging.yaml (pool limit 2: at most two GPU nodes).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }
  backend "s3" {
    bucket       = "drugrepo-staging-tfstate"
    key          = "infra/staging/terraform.tfstate"
    region       = "us-east-1"
    encrypt      = true
    use_lockfile = true
  }
}

locals {
  env    = "staging"
  region = "us-east-1"
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
  azs                = ["us-east-1a", "us-east-1b"]
  cidr               = "10.1.0.0/16"
  enable_nat_gateway = true
  single_nat_gateway = true
  kubernetes_version = "1.33"
  cpu_pool           = { instance_type = "m7i.xlarge", min_size = 2, desired_size = 2, max_size = 4 }
  enable_gpu_pool    = true
  gpu_pool           = { instance_type = "g6.2xlarge", max_size = 2 }
  database = {
    instance_class           = "db.t4g.medium"
    allocated_storage_gb     = 50
    max_allocated_storage_gb = 200
    multi_az                 = false
    backup_retention_days    = 7
    deletion_protection      = true
  }
  cache                   = { node_type = "cache.t4g.small", num_nodes = 2 }
  log_retention_days      = 90
  noncurrent_version_days = 30
}
