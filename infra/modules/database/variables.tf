variable "name" {
  description = "Prefix of every name (drugrepo-<env>)."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets of the instance."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "The only security group admitted on the PostgreSQL port (the cluster's nodes)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting storage, Performance Insights, the master password secret and logs."
  type        = string
}

variable "instance_class" {
  type = string
}

variable "allocated_storage_gb" {
  type = number
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling."
  type        = number
}

variable "multi_az" {
  type = bool
}

variable "backup_retention_days" {
  type = number
}

variable "deletion_protection" {
  type = bool
}

variable "log_retention_days" {
  description = "Days the PostgreSQL logs are kept in CloudWatch."
  type        = number
}

variable "databases" {
  description = "Databases on the instance: the first is created with it, the rest by infra/README.md's bootstrap."
  type        = list(string)
  default     = ["dagster", "mlflow", "optuna"]
}

variable "username" {
  description = "The master user (its password lives in Secrets Manager, managed by RDS)."
  type        = string
  default     = "dagster"
}
