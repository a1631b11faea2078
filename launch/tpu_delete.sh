#!/usr/bin/env bash
# Deletes a TPU VM (or, with --queued, its queued resource and node). Data on GCS stays.
#
#   launch/tpu_delete.sh --name=hdb --zone=us-central2-b [--queued] [--project=P] [--dry-run]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"
delete_tpu
