variable "name" {
  description = "Prefix of every name (drugrepo-<env>)."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache nodes."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "The only security group admitted on the Redis port (the cluster's nodes)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the cache at rest."
  type        = string
}

variable "node_type" {
  type = string
}

variable "num_nodes" {
  description = "Primary plus replicas; more than one turns on automatic failover across zones."
  type        = number
}
