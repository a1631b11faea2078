# shellcheck shell=bash disable=SC2034,SC2016  # sourced: its variables are read by the scripts that source it
# Shared by the launch/ scripts (sourced, not run): options, --dry-run, and the Cloud TPU steps.
#
# Every gcloud/ssh command goes through `run`: with --dry-run it is printed (shell-quoted, one line,
# ready to paste) instead of run. For tests, a dry run can play a preemption: DRY_RUN_STATES is the
# comma-separated sequence of TPU states `tpu_state` reports (default READY) and DRY_RUN_RESULTS the
# exit codes of the phase runs (default 0).

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$LAUNCH_DIR")"

NAME="" ZONE="" PROJECT="" TYPE="v4-8" VERSION="tpu-ubuntu2204-base" SPOT=0 QUEUED=0 DRY_RUN=0
PHASE="" WORKDIR="" CONFIG="" MAX_RESTARTS=5 EXTRAS="data" REMOTE_DIR="hdb_jax" WAIT_S=30
EXTRA_ARGS=()
IFS=, read -r -a _DRY_STATES <<< "${DRY_RUN_STATES:-READY}"
IFS=, read -r -a _DRY_RESULTS <<< "${DRY_RUN_RESULTS:-0}"

die() { echo "error: $*" >&2; exit 2; }

usage() {  # the comment block at the top of the calling script
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
}

parse_args() {
  while (($#)); do
    case "$1" in
      --name=*) NAME="${1#*=}" ;;
      --zone=*) ZONE="${1#*=}" ;;
      --project=*) PROJECT="${1#*=}" ;;
      --type=*) TYPE="${1#*=}" ;;
      --version=*) VERSION="${1#*=}" ;;
      --spot) SPOT=1 ;;
      --queued) QUEUED=1 ;;
      --phase=*) PHASE="${1#*=}" ;;
      --workdir=*) WORKDIR="${1#*=}" ;;
      --config=*) CONFIG="${1#*=}" ;;
      --max-restarts=*) MAX_RESTARTS="${1#*=}" ;;
      --extras=*) EXTRAS="${1#*=}" ;;
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      --) shift; EXTRA_ARGS=("$@"); break ;;
      *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
  done
  [[ -n "$NAME" ]] || die "--name=TPU_NAME is required"
  [[ -n "$ZONE" ]] || die "--zone=ZONE is required (e.g. us-central2-b)"
  [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]] || die "--max-restarts takes a whole number"
  GFLAGS=(--zone="$ZONE")
  [[ -z "$PROJECT" ]] || GFLAGS+=(--project="$PROJECT")
  if ((DRY_RUN)); then echo "# dry run: printing the commands, running none" >&2; fi
}

run() {  # run a command, or print it under --dry-run
  if ((DRY_RUN)); then
    local quoted
    printf -v quoted '%q ' "$@"
    echo "${quoted% }"
  else
    "$@"
  fi
}

# gs://BUCKET/PATH -> /gcs/BUCKET/PATH, where every worker mounts BUCKET with gcsfuse: the phases write
# plain files (and orbax checkpoints) with ordinary file operations.
gcs_bucket() { local rest="${1#gs://}"; echo "${rest%%/*}"; }
local_path() { if [[ "$1" == gs://* ]]; then echo "/gcs/${1#gs://}"; else echo "$1"; fi; }

mount_snippet() {  # remote shell lines that mount bucket $1 at /gcs/$1 (idempotent)
  echo "sudo mkdir -p /gcs/$1 && sudo chown \"\$USER\" /gcs/$1"
  echo "mountpoint -q /gcs/$1 || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $1 /gcs/$1"
}

# Remote shell lines that install gcsfuse from Google's apt repository (TPU VM images are Ubuntu).
GCSFUSE_INSTALL='if ! command -v gcsfuse >/dev/null; then
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
  sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
fi'

on_workers() {  # on_workers SCRIPT: run SCRIPT on every worker of the TPU VM (in parallel)
  run gcloud compute tpus tpu-vm ssh "$NAME" --worker=all "${GFLAGS[@]}" --command="$1"
}

create_tpu() {
  local spot=()
  ((SPOT)) && spot=(--spot)
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" --accelerator-type="$TYPE" \
      --runtime-version="$VERSION" "${spot[@]}" "${GFLAGS[@]}"
    wait_active
  else
    run gcloud compute tpus tpu-vm create "$NAME" --accelerator-type="$TYPE" --version="$VERSION" \
      "${spot[@]}" "${GFLAGS[@]}"
  fi
}

wait_active() {  # a queued resource is granted when capacity frees up: poll until ACTIVE
  local state
  while :; do
    if ((DRY_RUN)); then
      run gcloud compute tpus queued-resources describe "$NAME" "${GFLAGS[@]}" --format='value(state.state)'
      return 0
    fi
    state="$(gcloud compute tpus queued-resources describe "$NAME" "${GFLAGS[@]}" --format='value(state.state)')"
    case "$state" in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDED) die "queued resource $NAME is $state" ;;
      *) echo "queued resource $NAME: $state; waiting ${WAIT_S}s" >&2; sleep "$WAIT_S" ;;
    esac
  done
}

delete_tpu() {
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources delete "$NAME" --force --quiet "${GFLAGS[@]}"
  else
    run gcloud compute tpus tpu-vm delete "$NAME" --quiet "${GFLAGS[@]}"
  fi
}

tpu_state() {  # sets STATE: READY, PREEMPTED, TERMINATED, ..., or NOT_FOUND
  if ((DRY_RUN)); then
    run gcloud compute tpus tpu-vm describe "$NAME" "${GFLAGS[@]}" --format='value(state)'
    STATE="${_DRY_STATES[0]}"
    ((${#_DRY_STATES[@]} > 1)) && _DRY_STATES=("${_DRY_STATES[@]:1}")
    return 0
  fi
  STATE="$(gcloud compute tpus tpu-vm describe "$NAME" "${GFLAGS[@]}" --format='value(state)' 2>/dev/null)" \
    || STATE=NOT_FOUND
  STATE="${STATE:-NOT_FOUND}"
}

install_tpu() {  # copy this working tree to every worker, pip install it with jax[tpu]; gcsfuse
  local tarball="${TMPDIR:-/tmp}/hdb_jax-$NAME.tgz"
  run tar --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' --exclude=.venv -czf "$tarball" \
    -C "$REPO_ROOT" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:$REMOTE_DIR.tgz" --worker=all "${GFLAGS[@]}"
  local script
  script="set -euo pipefail
$GCSFUSE_INSTALL
rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR && tar xzf ~/$REMOTE_DIR.tgz -C ~/$REMOTE_DIR && cd ~/$REMOTE_DIR
python3 -m pip install -q -U pip
python3 -m pip install -q -e '.[$EXTRAS]'
python3 -m pip install -q \"jax[tpu]==\$(python3 -c 'import jax; print(jax.__version__)')\"
python3 -c 'import jax, hdb_jax; print(\"jax\", jax.__version__, \"installed on\", \"\$(hostname)\")'"
  on_workers "$script"
}
