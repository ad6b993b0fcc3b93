variable "env" {
  description = "Environment name: dev, staging or prod. Every name starts with drugrepo-<env>."
  type        = string
}

variable "region" {
  type = string
}

variable "azs" {
  description = "Availability zones (at least two: EKS and RDS subnet groups need them)."
  type        = list(string)
}

variable "cidr" {
  description = "The environment's VPC range."
  type        = string
}

variable "enable_nat_gateway" {
  type = bool
}

variable "single_nat_gateway" {
  type    = bool
  default = false
}

variable "interface_endpoints" {
  description = "Interface endpoints of the VPC (what private nodes need where there is no NAT)."
  type        = list(string)
  default     = []
}

variable "kubernetes_version" {
  type = string
}

variable "cpu_pool" {
  type = object({
    instance_type = string
    min_size      = number
    desired_size  = number
    max_size      = number
  })
}

variable "enable_gpu_pool" {
  type = bool
}

variable "gpu_pool" {
  type = object({
    instance_type = string
    max_size      = number
  })
  default = null
}

variable "database" {
  type = object({
    instance_class           = string
    allocated_storage_gb     = number
    max_allocated_storage_gb = number
    multi_az                 = bool
    backup_retention_days    = number
    deletion_protection      = bool
  })
}

variable "cache" {
  type = object({
    node_type = string
    num_nodes = number
  })
}

variable "log_retention_days" {
  description = "Days the VPC flow, EKS control-plane and PostgreSQL logs are kept."
  type        = number
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept in the bucket."
  type        = number
}

variable "admin_principal_arns" {
  description = "IAM principals given cluster-admin (operators, the CI deploy role)."
  type        = list(string)
  default     = []
}
