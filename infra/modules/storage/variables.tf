variable "name" {
  description = "Prefix of every name (drugrepo-<env>); also the data bucket's name."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the data bucket."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept."
  type        = number
}

variable "abort_incomplete_upload_days" {
  description = "Days after which S3 drops the parts of a multipart upload that never completed."
  type        = number
  default     = 3
}
