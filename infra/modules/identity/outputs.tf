output "role_arns" {
  description = "Kubernetes service account name => the ARN of the role it assumes (its eks.amazonaws.com/role-arn annotation)."
  value       = { for key, sa in var.service_accounts : sa.service_account => aws_iam_role.this[key].arn }
}
