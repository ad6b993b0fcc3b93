# IAM roles for Kubernetes service accounts (IRSA): a pod of service account <sa> in the environment's
# namespace assumes <name>-<role> through the cluster's OIDC provider. No IAM user, no access key.
data "aws_iam_policy_document" "trust" {
  for_each = var.service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each           = var.service_accounts
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.trust[each.key].json
  tags               = { Name = "${var.name}-${each.key}" }
}

data "aws_iam_policy_document" "bucket" {
  for_each = var.service_accounts
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for prefix in concat(each.value.read_prefixes, each.value.write_prefixes) : "${prefix}/*"]
    }
  }
  statement {
    sid       = "Read"
    actions   = ["s3:GetObject"]
    resources = [for prefix in concat(each.value.read_prefixes, each.value.write_prefixes) : "${var.bucket_arn}/${prefix}/*"]
  }
  dynamic "statement" {
    for_each = length(each.value.write_prefixes) > 0 ? [1] : []
    content {
      sid       = "Write"
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = [for prefix in each.value.write_prefixes : "${var.bucket_arn}/${prefix}/*"]
    }
  }
  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_policy" "bucket" {
  for_each    = var.service_accounts
  name        = "${var.name}-${each.key}-bucket"
  description = "Bucket prefixes of the ${each.value.service_account} service account"
  policy      = data.aws_iam_policy_document.bucket[each.key].json
}

resource "aws_iam_role_policy_attachment" "bucket" {
  for_each   = var.service_accounts
  role       = aws_iam_role.this[each.key].name
  policy_arn = aws_iam_policy.bucket[each.key].arn
}
