#!/usr/bin/env bash
# Installs this working tree on every worker of a TPU VM: copies it over, pip installs it with the
# given extras (default: data, for tf.data/TFDS), then jax[tpu] of the jax version that came with it.
#
#   launch/tpu_install.sh --name=hdb --zone=us-central2-b [--extras=data,face] [--project=P] [--dry-run]
#
# --dry-run: print the tar/gcloud commands instead of running them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"
install_tpu
