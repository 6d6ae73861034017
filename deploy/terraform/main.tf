# A tuf-mirror destination on AWS and the jobs that fill it:
#
# - an S3 bucket (private, versioned, TLS only, incomplete multipart uploads
#   aborted, optional access logs), served by CloudFront through origin access
#   control (only metadata/ and targets/ are readable; optional aliases with an ACM
#   certificate, TLS 1.2 minimum);
# - the writer: an IAM role for the jobs (and optionally an EKS service account);
# - AWS Batch on Fargate or Fargate Spot: one compute environment, one job queue,
#   job definitions for `sync`, `shard plan`, `shard copy` (an array job with a
#   retry strategy and a timeout) and `shard publish`;
# - a Step Functions state machine for a first copy: plan -> copy (array of N) ->
#   publish, the execution name being the run id;
# - an EventBridge Scheduler schedule for the regular incremental sync;
# - CloudWatch log groups for the jobs and the state machine.
#
# What the mirror needs from S3: GetObject/PutObject on the prefix (publishing, the
# lock written with If-None-Match, the work manifests), DeleteObject (releasing the
# lock), ListBucket (presence checks; a HEAD of a missing key answers 404, not 403).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  key_prefix = var.prefix == "" ? "" : "${var.prefix}/"
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  tags       = merge({ "app" = "tuf-mirror" }, var.tags)

  # The container command of each job definition (the image's ENTRYPOINT is
  # `tuf-mirror`). Ref::name is an AWS Batch parameter, set by Step Functions.
  # A test parses these with the real CLI parser: keep one list per line.
  job_commands = {
    sync    = ["--log-format", "json", "sync"]
    plan    = ["--log-format", "json", "shard", "plan", "--shards", "Ref::shards", "--run-id", "Ref::run_id"]
    copy    = ["--log-format", "json", "shard", "copy", "--run-id", "Ref::run_id"]
    publish = ["--log-format", "json", "shard", "publish", "--run-id", "Ref::run_id"]
  }

  environment = merge(
    {
      TUF_MIRROR_UPSTREAM  = var.upstream
      TUF_MIRROR_DEST      = "s3://${aws_s3_bucket.mirror.id}${var.prefix == "" ? "" : "/${var.prefix}"}"
      TUF_MIRROR_ROOT      = var.root_path
      TUF_MIRROR_S3_REGION = local.region
    },
    var.root_sha256 == null ? {} : { TUF_MIRROR_ROOT_SHA256 = var.root_sha256 },
    var.extra_environment,
  )
}

# -- the bucket -----------------------------------------------------------------------

resource "aws_s3_bucket" "mirror" {
  #checkov:skip=CKV_AWS_144:a mirror is itself a copy of the upstream; a rebuild is one sharded first copy away
  #checkov:skip=CKV2_AWS_62:nothing consumes object events; the jobs are scheduled
  #checkov:skip=CKV_AWS_18:access logging is optional (var.access_logs_bucket), through aws_s3_bucket_logging
  #checkov:skip=CKV_AWS_145:the content is public by design (served by CloudFront); SSE-S3 (AES256) avoids a KMS call per client request
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = local.tags
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

resource "aws_s3_bucket_versioning" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "mirror" {
  bucket = aws_s3_bucket.mirror.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "mirror" {
  bucket = aws_s3_bucket.mirror.id

  # A copy killed mid-upload (spot interruption, SIGKILL) leaves its multipart
  # upload behind, billed until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # timestamp.json is replaced every few minutes, the lock on every run.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.mirror]
}

resource "aws_s3_bucket_logging" "mirror" {
  count         = var.access_logs_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.mirror.id
  target_bucket = var.access_logs_bucket
  target_prefix = "${var.access_logs_prefix}s3/"
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "CloudFrontReadsPublishedContent"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.mirror.arn}/${local.key_prefix}metadata/*", "${aws_s3_bucket.mirror.arn}/${local.key_prefix}targets/*"]
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
  statement {
    sid       = "TLSOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.mirror.arn, "${aws_s3_bucket.mirror.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "mirror" {
  bucket     = aws_s3_bucket.mirror.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.mirror]
}

# -- CloudFront -----------------------------------------------------------------------

resource "aws_cloudfront_origin_access_control" "mirror" {
  name                              = "${var.name}-${var.bucket_name}"
  description                       = "tuf-mirror ${var.bucket_name}"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_response_headers_policy" "mirror" {
  name = "${var.name}-security-headers"
  security_headers_config {
    content_type_options {
      override = true
    }
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
  }
}

resource "aws_cloudfront_distribution" "mirror" {
  #checkov:skip=CKV_AWS_68:WAF is optional (var.web_acl_id): static, signed, public content
  #checkov:skip=CKV_AWS_310:one origin; clients fail over between mirrors themselves
  #checkov:skip=CKV_AWS_374:a public mirror serves every country
  #checkov:skip=CKV2_AWS_47:WAF is optional (var.web_acl_id); no Log4j surface behind a static S3 origin
  #checkov:skip=CKV_AWS_86:standard logs are optional (var.access_logs_bucket), through the dynamic logging_config
  #checkov:skip=CKV_AWS_174:TLS 1.2 minimum applies with var.acm_certificate_arn; the default *.cloudfront.net certificate fixes its own minimum
  #checkov:skip=CKV2_AWS_42:a custom certificate is optional (var.acm_certificate_arn)
  #checkov:skip=CKV_AWS_305:a TUF repository has no index document: clients ask for exact metadata/ and targets/ paths
  enabled         = true
  is_ipv6_enabled = true
  comment         = "tuf-mirror ${var.bucket_name}"
  aliases         = var.aliases
  price_class     = var.price_class
  web_acl_id      = var.web_acl_id
  http_version    = "http2and3"
  tags            = local.tags

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
    # Managed-CachingOptimized honours the objects' own Cache-Control:
    # immutable for versioned files, a short max-age for timestamp.json.
    cache_policy_id            = "658327ea-f89d-4fab-a63d-7e88639e58f6"
    response_headers_policy_id = aws_cloudfront_response_headers_policy.mirror.id
  }

  dynamic "logging_config" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket          = "${logging_config.value}.s3.amazonaws.com"
      prefix          = "${var.access_logs_prefix}cloudfront/"
      include_cookies = false
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.acm_certificate_arn == null
    acm_certificate_arn            = var.acm_certificate_arn
    ssl_support_method             = var.acm_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.acm_certificate_arn == null ? "TLSv1" : var.minimum_protocol_version
  }
}

# -- the writer ---------------------------------------------------------------------------

data "aws_iam_policy_document" "writer_trust" {
  statement {
    sid     = "BatchTasks"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
  dynamic "statement" {
    for_each = var.eks_oidc_provider_arn == null ? [] : [var.eks_oidc_provider_arn]
    content {
      sid     = "EksServiceAccount"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }
      condition {
        test     = "StringEquals"
        variable = "${replace(statement.value, "/^.*oidc-provider\\//", "")}:sub"
        values   = [var.eks_service_account]
      }
      condition {
        test     = "StringEquals"
        variable = "${replace(statement.value, "/^.*oidc-provider\\//", "")}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
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

resource "aws_iam_role" "writer" {
  name               = "${var.name}-writer"
  description        = "tuf-mirror jobs: read and write the mirror's prefix"
  assume_role_policy = data.aws_iam_policy_document.writer_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "writer" {
  name   = "mirror-bucket"
  role   = aws_iam_role.writer.id
  policy = data.aws_iam_policy_document.writer.json
}

# -- logs -------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "jobs" {
  #checkov:skip=CKV_AWS_158:KMS is optional (var.log_kms_key_arn); the logs hold no secrets
  name              = "/aws/batch/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "states" {
  #checkov:skip=CKV_AWS_158:KMS is optional (var.log_kms_key_arn); the logs hold no secrets
  name              = "/aws/vendedlogs/states/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = local.tags
}

# -- AWS Batch ----------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-task-execution"
  description        = "Pull the tuf-mirror image and write its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_batch_compute_environment" "mirror" {
  compute_environment_name_prefix = "${var.name}-"
  type                            = "MANAGED"
  state                           = "ENABLED"
  tags                            = local.tags

  compute_resources {
    type               = var.use_spot ? "FARGATE_SPOT" : "FARGATE"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "mirror" {
  name     = var.name
  state    = "ENABLED"
  priority = 1
  tags     = local.tags

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.mirror.arn
  }
}

locals {
  job_container = {
    for job, command in local.job_commands : job => {
      image            = var.image
      command          = command
      jobRoleArn       = aws_iam_role.writer.arn
      executionRoleArn = aws_iam_role.execution.arn
      user             = "10001:10001"
      # The S3 spool (large targets in flight) lives on /tmp.
      readonlyRootFilesystem = true
      volumes                = [{ name = "tmp" }]
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      resourceRequirements = [
        { type = "VCPU", value = tostring(job == "copy" ? var.copy_vcpu : 1) },
        { type = "MEMORY", value = tostring(job == "copy" ? var.copy_memory : 2048) },
      ]
      environment                  = [for k, v in local.environment : { name = k, value = v }]
      fargatePlatformConfiguration = { platformVersion = "LATEST" }
      networkConfiguration         = { assignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED" }
      ephemeralStorage             = { sizeInGiB = var.ephemeral_storage_gib }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.jobs.name
          awslogs-region        = local.region
          awslogs-stream-prefix = job
        }
      }
    }
  }
}

resource "aws_batch_job_definition" "sync" {
  name                  = "${var.name}-sync"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  container_properties  = jsonencode(local.job_container["sync"])
  tags                  = local.tags
  timeout {
    attempt_duration_seconds = 3600
  }
}

resource "aws_batch_job_definition" "plan" {
  name                  = "${var.name}-shard-plan"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  container_properties  = jsonencode(local.job_container["plan"])
  parameters            = { shards = tostring(var.shards), run_id = "unset" }
  tags                  = local.tags
  retry_strategy {
    attempts = 3
  }
  timeout {
    attempt_duration_seconds = 14400
  }
}

resource "aws_batch_job_definition" "copy" {
  name                  = "${var.name}-shard-copy"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  container_properties  = jsonencode(local.job_container["copy"])
  parameters            = { run_id = "unset" }
  tags                  = local.tags

  # Exit 1 (verification failed) and 2 (usage) will not get better by retrying;
  # anything else (3 transient, 143 SIGTERM, Spot reclaiming the task) is retried,
  # and the rerun continues where the shard stopped.
  retry_strategy {
    attempts = var.copy_attempts
    evaluate_on_exit {
      on_exit_code = "1"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_exit_code = "2"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "RETRY"
    }
  }
  timeout {
    attempt_duration_seconds = var.copy_timeout_seconds
  }
}

resource "aws_batch_job_definition" "publish" {
  name                  = "${var.name}-shard-publish"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  container_properties  = jsonencode(local.job_container["publish"])
  parameters            = { run_id = "unset" }
  tags                  = local.tags
  retry_strategy {
    attempts = 3
    evaluate_on_exit {
      on_exit_code = "1"
      action       = "EXIT"
    }
  }
  timeout {
    attempt_duration_seconds = 14400
  }
}

# -- Step Functions: plan -> copy (array of N) -> publish -----------------------------------

data "aws_iam_policy_document" "states_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "states" {
  #checkov:skip=CKV_AWS_111:only DescribeJobs/TerminateJob, log delivery and X-Ray are on "*": they take no resource ARNs
  #checkov:skip=CKV_AWS_356:only DescribeJobs/TerminateJob, log delivery and X-Ray are on "*": they take no resource ARNs
  statement {
    sid     = "SubmitJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.mirror.arn,
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-*",
    ]
  }
  statement {
    sid       = "WatchJobs"
    actions   = ["batch:DescribeJobs", "batch:TerminateJob"]
    resources = ["*"] # Batch has no resource-level permissions for these
  }
  statement {
    sid       = "SyncIntegration"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account}:rule/StepFunctionsGetEventsForBatchJobsRule"]
  }
  statement {
    sid = "Logs"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"] # log delivery APIs take no resource ARNs
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray takes no resource ARNs
  }
}

resource "aws_iam_role" "states" {
  name               = "${var.name}-first-copy"
  description        = "Step Functions: run the sharded first copy on AWS Batch"
  assume_role_policy = data.aws_iam_policy_document.states_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "states" {
  name   = "run-batch-jobs"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states.json
}

resource "aws_sfn_state_machine" "first_copy" {
  name     = "${var.name}-first-copy"
  role_arn = aws_iam_role.states.arn
  tags     = local.tags

  # Start an execution with input {}: its name becomes the run id. To resume a
  # failed run, start another execution with input {"run_id": "<the run id>"}:
  # plan keeps the existing manifest, copy skips what is present, publish finishes.
  definition = jsonencode({
    Comment = "tuf-mirror sharded first copy: plan -> copy (array of N) -> publish"
    StartAt = "RunId"
    States = {
      RunId = {
        Type    = "Choice"
        Choices = [{ Variable = "$.run_id", IsPresent = true, Next = "Plan" }]
        Default = "NameRun"
      }
      NameRun = {
        Type       = "Pass"
        Parameters = { "run_id.$" = "$$.Execution.Name" }
        Next       = "Plan"
      }
      Plan = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::batch:submitJob.sync"
        Parameters = {
          "JobName"       = "${var.name}-plan"
          "JobQueue"      = aws_batch_job_queue.mirror.arn
          "JobDefinition" = aws_batch_job_definition.plan.arn
          "Parameters" = {
            "run_id.$" = "$.run_id"
            "shards"   = tostring(var.shards)
          }
        }
        ResultPath = null
        Next       = "Copy"
      }
      Copy = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::batch:submitJob.sync"
        Parameters = {
          "JobName"         = "${var.name}-copy"
          "JobQueue"        = aws_batch_job_queue.mirror.arn
          "JobDefinition"   = aws_batch_job_definition.copy.arn
          "ArrayProperties" = { "Size" = var.shards }
          "Parameters"      = { "run_id.$" = "$.run_id" }
        }
        ResultPath = null
        Next       = "Publish"
      }
      Publish = {
        Type     = "Task"
        Resource = "arn:${local.partition}:states:::batch:submitJob.sync"
        Parameters = {
          "JobName"       = "${var.name}-publish"
          "JobQueue"      = aws_batch_job_queue.mirror.arn
          "JobDefinition" = aws_batch_job_definition.publish.arn
          "Parameters"    = { "run_id.$" = "$.run_id" }
        }
        ResultPath = null
        End        = true
      }
    }
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }
}

# -- EventBridge Scheduler: the incremental sync ------------------------------------------

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    actions   = ["batch:SubmitJob"]
    resources = [aws_batch_job_queue.mirror.arn, "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-sync*"]
  }
}

resource "aws_iam_role" "scheduler" {
  count              = var.sync_schedule == null ? 0 : 1
  name               = "${var.name}-sync-schedule"
  description        = "EventBridge Scheduler: submit the incremental sync job"
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "scheduler" {
  count  = var.sync_schedule == null ? 0 : 1
  name   = "submit-sync"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "sync" {
  #checkov:skip=CKV_AWS_297:the schedule's input names a job queue and definition, nothing secret; AWS-owned key
  count               = var.sync_schedule == null ? 0 : 1
  name                = "${var.name}-sync"
  description         = "tuf-mirror incremental sync; an overlapping run exits 4 (the destination is locked)"
  schedule_expression = var.sync_schedule

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.scheduler[0].arn
    input = jsonencode({
      JobName       = "${var.name}-sync"
      JobQueue      = aws_batch_job_queue.mirror.arn
      JobDefinition = aws_batch_job_definition.sync.arn
    })
    retry_policy {
      maximum_retry_attempts = 0 # the next tick is the retry
    }
  }
}
