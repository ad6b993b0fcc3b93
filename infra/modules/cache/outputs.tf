output "url" {
  description = "redis-py URL of the primary (TLS: rediss), database 0."
  value       = "rediss://${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}/0"
}
