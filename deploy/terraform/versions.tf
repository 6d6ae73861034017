terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # compute_environment_order in aws_batch_job_queue, aws_scheduler_schedule
      version = ">= 5.70, < 7.0"
    }
  }
}
