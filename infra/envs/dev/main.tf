# dev: the developers' cloud sandbox. Smallest sizes, no NAT gateway (nodes reach AWS through VPC
# endpoints only, images come from ECR), no GPU node pool (no Helm values of dev ask for one).
terraform {
  required_version = ">= 1.10"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }
  backend "s3" {
    bucket       = "drugrepo-dev-tfstate"
    key          = "infra/dev/terraform.tfstate"
    region       = "us-east-1"
    encrypt      = true
    use_lockfile = true
  }
}

locals {
  env    = "dev"
  region = "us-east-1"
}

provider "aws" {
  region = local.region
  default_tags {
    tags = { Project = "drugrepo", Environment = local.env, ManagedBy = "terraform" }
  }
}

module "platform" {
  source              = "../../modules/platform"
  env                 = local.env
  region              = local.region
  azs                 = ["us-east-1a", "us-east-1b"]
  cidr                = "10.0.0.0/16"
  enable_nat_gateway  = false
  interface_endpoints = ["ec2", "ecr.api", "ecr.dkr", "sts", "logs", "elasticloadbalancing"]
  kubernetes_version  = "1.33"
  cpu_pool            = { instance_type = "m7i.large", min_size = 1, desired_size = 1, max_size = 2 }
  enable_gpu_pool     = false
  database = {
    instance_class           = "db.t4g.micro"
    allocated_storage_gb     = 20
    max_allocated_storage_gb = 50
    multi_az                 = false
    backup_retention_days    = 1
    deletion_protection      = false
  }
  cache                   = { node_type = "cache.t4g.micro", num_nodes = 1 }
  log_retention_days      = 30
  noncurrent_version_days = 7
}
