#!/usr/bin/env bash
# Runs one phase on every worker of a TPU VM (made with tpu_create.sh + tpu_install.sh, or made here
# when missing), resuming after preemption.
#
#   launch/tpu_run.sh --name=hdb --zone=us-central2-b --phase=train --workdir=gs://BUCKET/hyper \
#       [--config=configs/hyper.py] [--max-restarts=5] [--type=v4-32 --spot --queued ...] [--dry-run] \
#       [-- --config.key=value ...]
#
# --phase: preoptimize | train | personalize | evaluate (default config: configs/lidb.py, hyper.py,
#   personalize.py, evaluate.py). Flags after `--` go to the phase unchanged (e.g.
#   --config.data.data_dir=gs://BUCKET/tfds: TFDS reads GCS itself).
# --workdir=gs://BUCKET/PATH: every worker mounts BUCKET at /gcs/BUCKET (gcsfuse) and the phase writes
#   to /gcs/BUCKET/PATH, so checkpoints, weights and outputs survive the VM.
# Resume: when the run fails and the TPU is no longer READY (preempted, terminated, gone), the TPU is
#   deleted, created again with the same --type/--version/--spot/--queued, reinstalled, and the same
#   command runs again: every phase resumes from what its workdir holds (train: the last orbax
#   checkpoint; preoptimize: the finished chunks). A failure on a READY TPU is a real error: no retry.
# --dry-run: print the commands instead of running them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"

case "$PHASE" in
  preoptimize) MODULE=hdb_jax.preoptimize DEFAULT_CONFIG=configs/lidb.py ;;
  train) MODULE=hdb_jax.train DEFAULT_CONFIG=configs/hyper.py ;;
  personalize) MODULE=hdb_jax.personalize DEFAULT_CONFIG=configs/personalize.py ;;
  evaluate) MODULE=hdb_jax.evaluate DEFAULT_CONFIG=configs/evaluate.py ;;
  *) die "--phase must be preoptimize, train, personalize or evaluate" ;;
esac
[[ -n "$WORKDIR" ]] || die "--workdir is required (gs://BUCKET/PATH keeps it across preemptions)"
[[ "$WORKDIR" == gs://* ]] || echo "warning: --workdir=$WORKDIR is on the VM's disk: lost if preempted" >&2

command=(python3 -m "$MODULE" --config="${CONFIG:-$DEFAULT_CONFIG}" --workdir="$(local_path "$WORKDIR")"
         "${EXTRA_ARGS[@]}")
printf -v quoted '%q ' "${command[@]}"
script="set -euo pipefail"
[[ "$WORKDIR" != gs://* ]] || script+=$'\n'"$(mount_snippet "$(gcs_bucket "$WORKDIR")")"
script+=$'\n'"cd ~/$REMOTE_DIR && ${quoted% } 2>&1 | tee -a ~/hdb_jax_$PHASE.log"

run_phase() {  # sets RC
  if ((DRY_RUN)); then
    on_workers "$script"
    RC="${_DRY_RESULTS[0]}"
    ((${#_DRY_RESULTS[@]} > 1)) && _DRY_RESULTS=("${_DRY_RESULTS[@]:1}")
    return 0
  fi
  RC=0
  on_workers "$script" || RC=$?
}

restarts=0
tpu_state
while :; do
  if [[ "$STATE" != READY ]]; then
    echo "TPU $NAME is $STATE: (re)creating it" >&2
    [[ "$STATE" == NOT_FOUND ]] || delete_tpu
    create_tpu
    install_tpu
  fi
  run_phase
  if [[ "$RC" == 0 ]]; then
    echo "phase $PHASE finished; outputs in $WORKDIR" >&2
    exit 0
  fi
  tpu_state
  [[ "$STATE" != READY ]] || die "phase $PHASE failed (exit $RC) on a READY TPU: a real error, not retrying (see ~/hdb_jax_$PHASE.log on the workers)"
  restarts=$((restarts + 1))
  ((restarts <= MAX_RESTARTS)) || die "TPU $NAME lost $restarts times; giving up (--max-restarts=$MAX_RESTARTS)"
  echo "TPU $NAME is $STATE after exit $RC (preempted?): restart $restarts of $MAX_RESTARTS" >&2
done
