output "bucket_name" {
  value       = aws_s3_bucket.mirror.id
  description = "The mirror's bucket."
}

output "dest" {
  value       = local.environment.TUF_MIRROR_DEST
  description = "The --dest of every job."
}

output "distribution_id" {
  value       = aws_cloudfront_distribution.mirror.id
  description = "The CloudFront distribution."
}

output "distribution_domain_name" {
  value       = aws_cloudfront_distribution.mirror.domain_name
  description = "Where clients find the mirror: https://<this>/metadata/ and /targets/ (or the aliases)."
}

output "writer_role_arn" {
  value       = aws_iam_role.writer.arn
  description = "The jobs' role (and the IRSA role of deploy/kubernetes' ServiceAccount)."
}

output "job_queue_arn" {
  value       = aws_batch_job_queue.mirror.arn
  description = "The Batch job queue."
}

output "job_definition_arns" {
  value = {
    sync    = aws_batch_job_definition.sync.arn
    plan    = aws_batch_job_definition.plan.arn
    copy    = aws_batch_job_definition.copy.arn
    publish = aws_batch_job_definition.publish.arn
  }
  description = "The Batch job definitions, by step."
}

output "first_copy_state_machine_arn" {
  value       = aws_sfn_state_machine.first_copy.arn
  description = "Start an execution (its name becomes the run id) for a sharded first copy."
}

output "log_group_names" {
  value       = { jobs = aws_cloudwatch_log_group.jobs.name, states = aws_cloudwatch_log_group.states.name }
  description = "CloudWatch log groups of the jobs and the state machine."
}
