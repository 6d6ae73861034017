terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.40: compute_environment_order in aws_batch_job_queue. 6.0 renames
      # compute_environment_name_prefix and aws_region.name: not yet supported.
      version = ">= 5.40, < 6.0"
    }
  }
}
