variable "name" {
  type        = string
  default     = "tuf-mirror"
  description = "Name prefix of every resource (IAM roles, Batch, Step Functions, log groups)."
}

variable "bucket_name" {
  type        = string
  description = "Name of the bucket holding the mirror."
}

variable "prefix" {
  type        = string
  default     = "mirror"
  description = "Key prefix of the mirror inside the bucket (no leading or trailing slash; empty for none)."
  validation {
    condition     = !startswith(var.prefix, "/") && !endswith(var.prefix, "/")
    error_message = "prefix must not start or end with a slash."
  }
}

variable "force_destroy" {
  type        = bool
  default     = false
  description = "Let `terraform destroy` delete a bucket that still holds objects."
}

variable "noncurrent_version_days" {
  type        = number
  default     = 30
  description = "Days a replaced or deleted object version (timestamp.json, the lock) is kept."
}

variable "access_logs_bucket" {
  type        = string
  default     = null
  description = "Bucket (name) for S3 server access logs and CloudFront standard logs; null: no access logs."
}

variable "access_logs_prefix" {
  type        = string
  default     = "tuf-mirror/"
  description = "Key prefix of the access logs in access_logs_bucket."
}

# -- CloudFront ---------------------------------------------------------------------

variable "aliases" {
  type        = list(string)
  default     = []
  description = "Extra domain names of the distribution (e.g. [\"tuf.example.org\"]); need acm_certificate_arn."
}

variable "acm_certificate_arn" {
  type        = string
  default     = null
  description = "ACM certificate (in us-east-1) for the aliases; null: CloudFront's default certificate."
  validation {
    condition     = var.acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:", var.acm_certificate_arn))
    error_message = "CloudFront takes ACM certificates from us-east-1 only."
  }
}

variable "minimum_protocol_version" {
  type        = string
  default     = "TLSv1.2_2021"
  description = "Minimum TLS version for viewers when acm_certificate_arn is set."
}

variable "price_class" {
  type        = string
  default     = "PriceClass_All"
  description = "CloudFront price class."
}

variable "web_acl_id" {
  type        = string
  default     = null
  description = "Optional WAF web ACL (ARN) for the distribution."
}

# -- the jobs -------------------------------------------------------------------------

variable "image" {
  type        = string
  description = "Container image of tuf-mirror, by digest (REGISTRY/tuf-mirror@sha256:...), with the pinned root inside (see examples/site-image)."
}

variable "upstream" {
  type        = string
  description = "Upstream base URL (TUF_MIRROR_UPSTREAM)."
}

variable "root_path" {
  type        = string
  default     = "/etc/tuf-mirror/root.json"
  description = "Path of the pinned root.json inside the image (TUF_MIRROR_ROOT)."
}

variable "root_sha256" {
  type        = string
  default     = null
  description = "sha256 of the pinned root.json (TUF_MIRROR_ROOT_SHA256): a job refuses to start with another root."
}

variable "extra_environment" {
  type        = map(string)
  default     = {}
  description = "More TUF_MIRROR_* settings for every job (e.g. { TUF_MIRROR_TRANSFERS = \"32\" })."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets of the Fargate tasks (private subnets with a NAT gateway or VPC endpoints for S3, STS, ECR and CloudWatch Logs)."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the Fargate tasks (egress HTTPS only is enough)."
}

variable "assign_public_ip" {
  type        = bool
  default     = false
  description = "Give Fargate tasks a public IP (public subnets without NAT)."
}

variable "use_spot" {
  type        = bool
  default     = true
  description = "Fargate Spot for the compute environment (copies are idempotent and SIGTERM-friendly); false: on-demand Fargate."
}

variable "max_vcpus" {
  type        = number
  default     = 64
  description = "Most vCPUs the compute environment runs at once (shards x copy_vcpu)."
}

variable "shards" {
  type        = number
  default     = 16
  description = "Shards of a first copy: the size of the copy array job (2..10000)."
  validation {
    condition     = var.shards >= 2 && var.shards <= 10000
    error_message = "An AWS Batch array job has 2 to 10000 children."
  }
}

variable "copy_vcpu" {
  type        = number
  default     = 2
  description = "vCPUs of one copy task (Fargate sizes)."
}

variable "copy_memory" {
  type        = number
  default     = 4096
  description = "Memory (MiB) of one copy task."
}

variable "copy_attempts" {
  type        = number
  default     = 5
  description = "Attempts of one shard (retried on exit 3, 143, or when Spot reclaims the task)."
}

variable "copy_timeout_seconds" {
  type        = number
  default     = 172800
  description = "Limit of one copy attempt, in seconds."
}

variable "ephemeral_storage_gib" {
  type        = number
  default     = 50
  description = "Fargate ephemeral storage (21..200 GiB): spool of large targets in flight."
}

variable "sync_schedule" {
  type        = string
  default     = "rate(5 minutes)"
  description = "EventBridge Scheduler expression of the incremental sync; null: no schedule."
}

variable "log_retention_days" {
  type        = number
  default     = 365
  description = "Retention of the CloudWatch log groups."
}

variable "log_kms_key_arn" {
  type        = string
  default     = null
  description = "Optional KMS key for the CloudWatch log groups."
}

variable "eks_oidc_provider_arn" {
  type        = string
  default     = null
  description = "Also let this EKS OIDC provider's service account assume the writer role (IRSA, deploy/kubernetes)."
}

variable "eks_service_account" {
  type        = string
  default     = "system:serviceaccount:tuf-mirror:tuf-mirror"
  description = "The IRSA subject allowed to assume the writer role."
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags of every resource."
}
