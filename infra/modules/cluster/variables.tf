variable "name" {
  description = "Prefix of every name (drugrepo-<env>); also the cluster's name."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the control plane's interfaces and of every node."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key encrypting Kubernetes secrets and the control-plane log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days the control-plane logs are kept."
  type        = number
}

variable "cpu_pool" {
  description = "The CPU node group: webserver, daemon, code locations, run and CPU step pods, the API."
  type = object({
    instance_type = string
    min_size      = number
    desired_size  = number
    max_size      = number
  })
}

variable "enable_gpu_pool" {
  description = "Create the GPU node group (where the Helm values run GPU steps on DRUGREPO_GPU_IMAGE)."
  type        = bool
}

variable "gpu_pool" {
  description = "The GPU node group: one node per GPU step (drugrepo_assets.lib.k8s.GPU_OP_TAGS), scaled from zero."
  type = object({
    instance_type = string
    max_size      = number
  })
  default = null
}

variable "admin_principal_arns" {
  description = "IAM principals (roles of operators and CI) given cluster-admin through EKS access entries."
  type        = list(string)
  default     = []
}
