#!/usr/bin/env bash
# Creates a Cloud TPU VM, or (--queued) a queued resource that waits for capacity.
#
#   launch/tpu_create.sh --name=hdb --zone=us-central2-b --type=v4-32 [--version=tpu-ubuntu2204-base]
#       [--project=P] [--spot] [--queued] [--dry-run]
#
# --spot: a preemptible (spot) TPU; tpu_run.sh recreates it after a preemption.
# --dry-run: print the gcloud commands instead of running them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"
create_tpu
