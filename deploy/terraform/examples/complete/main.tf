# A complete deployment: the mirror at https://tuf.example.org, a first copy in 64
# shards on Fargate Spot, an incremental sync every 5 minutes.
#
#   terraform init && terraform apply
#   aws stepfunctions start-execution --name first-copy-1 \
#     --state-machine-arn "$(terraform output -raw first_copy_state_machine_arn)"

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "tuf_mirror" {
  source = "../.."

  bucket_name         = "example-tuf-mirror"
  prefix              = "pypi"
  aliases             = ["tuf.example.org"]
  acm_certificate_arn = "arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000"
  access_logs_bucket  = "example-access-logs"

  image       = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/tuf-mirror-site@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  upstream    = "https://tuf-repo.example.org"
  root_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  extra_environment = {
    TUF_MIRROR_TRANSFERS = "32"
    TUF_MIRROR_UPLOADS   = "64"
  }

  subnet_ids         = ["subnet-00000000000000001", "subnet-00000000000000002"]
  security_group_ids = ["sg-00000000000000001"]
  use_spot           = true
  shards             = 64
  max_vcpus          = 128

  sync_schedule = "rate(5 minutes)"
}

output "mirror_url" {
  value = "https://tuf.example.org/"
}

output "state_machine" {
  value = module.tuf_mirror.first_copy_state_machine_arn
}
