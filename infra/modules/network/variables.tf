variable "name" {
  description = "Prefix of every name (drugrepo-<env>)."
  type        = string
}

variable "region" {
  description = "AWS region of the VPC endpoints' service names."
  type        = string
}

variable "cidr" {
  description = "The environment's VPC range (10.0.0.0/16 dev, 10.1.0.0/16 staging, 10.2.0.0/16 prod)."
  type        = string
}

variable "azs" {
  description = "Availability zones: one public and one private subnet in each."
  type        = list(string)
}

variable "enable_nat_gateway" {
  description = "Private subnets reach the internet through NAT gateways (false in dev: VPC endpoints only)."
  type        = bool
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones instead of one per zone."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "AWS services reached through interface endpoints (what private nodes need without NAT)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "KMS key encrypting the flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days the VPC flow logs are kept."
  type        = number
}
