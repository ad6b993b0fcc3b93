output "address" {
  description = "The instance's DNS name (its TLS certificate's name)."
  value       = aws_db_instance.this.address
}

output "port" {
  value = aws_db_instance.this.port
}

output "username" {
  value = aws_db_instance.this.username
}

output "databases" {
  value = var.databases
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the master password (RDS rotates it)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
