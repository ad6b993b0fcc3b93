output "bucket" {
  value = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.data.arn
}

output "prefixes" {
  description = "The prefix of each kind of object in the bucket."
  value       = local.prefixes
}

output "uris" {
  description = "s3:// URI of each prefix."
  value       = { for kind, prefix in local.prefixes : kind => "s3://${aws_s3_bucket.data.bucket}/${prefix}" }
}
