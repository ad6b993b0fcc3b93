variable "name" {
  description = "Prefix of every name (drugrepo-<env>)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the environment's pods (drugrepo-<env>)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "The cluster's OIDC provider, which the roles trust."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without its scheme."
  type        = string
}

variable "bucket_arn" {
  type = string
}

variable "kms_key_arn" {
  description = "The bucket's KMS key."
  type        = string
}

variable "service_accounts" {
  description = "Role suffix => the Kubernetes service account assuming it and the bucket prefixes it reads and writes."
  type = map(object({
    service_account = string
    read_prefixes   = list(string)
    write_prefixes  = list(string)
  }))
}
