# An S3 bucket to publish a tuf-mirror destination into, served through CloudFront,
# and the least-privilege IAM policy the mirror's writer needs.
#
# What the mirror needs from S3: GetObject/PutObject on the prefix (publishing and
# the lock object, written with If-None-Match), DeleteObject (releasing the lock),
# ListBucket (resume checks, and HEAD of a missing key answers 404 not 403).
# Versioned and content-addressed objects carry Cache-Control: immutable, so the
# CDN can keep them; timestamp.json carries a short max-age.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "bucket_name" {
  type        = string
  description = "Name of the bucket holding the mirror."
}

variable "prefix" {
  type        = string
  default     = ""
  description = "Key prefix of the mirror inside the bucket (no leading or trailing slash)."
}

locals {
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"
}

resource "aws_s3_bucket" "mirror" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "mirror" {
  bucket                  = aws_s3_bucket.mirror.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_cloudfront_origin_access_control" "mirror" {
  name                              = "${var.bucket_name}-oac"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_distribution" "mirror" {
  enabled = true
  comment = "tuf-mirror ${var.bucket_name}"

  origin {
    domain_name              = aws_s3_bucket.mirror.bucket_regional_domain_name
    origin_id                = "mirror"
    origin_path              = var.prefix == "" ? "" : "/${var.prefix}"
    origin_access_control_id = aws_cloudfront_origin_access_control.mirror.id
  }

  default_cache_behavior {
    target_origin_id       = "mirror"
    viewer_protocol_policy = "redirect-to-https"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    compress               = false # lengths and hashes are about the exact bytes
    # Honour the objects' own Cache-Control (immutable vs short max-age).
    cache_policy_id = "658327ea-f89d-4fab-a63d-7e88639e58f6" # Managed-CachingOptimized
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}

data "aws_iam_policy_document" "cdn_read" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.mirror.arn}/${local.key_prefix}*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.mirror.arn]
    }
  }
}

resource "aws_s3_bucket_policy" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  policy = data.aws_iam_policy_document.cdn_read.json
}

data "aws_iam_policy_document" "writer" {
  statement {
    sid       = "Objects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.mirror.arn}/${local.key_prefix}*"]
  }
  statement {
    sid       = "List"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.mirror.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }
}

resource "aws_iam_policy" "writer" {
  name   = "${var.bucket_name}-tuf-mirror-writer"
  policy = data.aws_iam_policy_document.writer.json
}

output "distribution_domain_name" {
  value       = aws_cloudfront_distribution.mirror.domain_name
  description = "Where clients find the mirror: https://<this>/metadata/ and /targets/."
}

output "writer_policy_arn" {
  value       = aws_iam_policy.writer.arn
  description = "Attach to the role or user that runs tuf-mirror sync --dest s3://bucket/prefix."
}
