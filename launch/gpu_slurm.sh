#!/usr/bin/env bash
# Submits Phase 1 (hypernetwork training) as a multi-node GPU job on SLURM: one process per node, each
# driving all of its node's GPUs; jax.distributed.initialize() finds its peers from SLURM's variables
# (hyper.py's config.distributed.auto). The job is requeued after preemption or node failure and the
# same command resumes from the last orbax checkpoint in WORKDIR (shared storage every node sees).
#
#   launch/gpu_slurm.sh --nodes=4 --gpus-per-node=8 --workdir=/shared/hyper [--partition=P]
#       [--time=48:00:00] [--config=configs/hyper.py] [--dry-run] [-- --config.key=value ...]
#
# Install first on the nodes (or in a shared venv): pip install -e ".[data]" "jax[cuda12]==<jax version>".
# --dry-run: print the batch script and the sbatch command instead of submitting.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=1 GPUS=8 WORKDIR="" PARTITION="" TIME="48:00:00" CONFIG=configs/hyper.py DRY_RUN=0 EXTRA_ARGS=()
while (($#)); do
  case "$1" in
    --nodes=*) NODES="${1#*=}" ;;
    --gpus-per-node=*) GPUS="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --partition=*) PARTITION="${1#*=}" ;;
    --time=*) TIME="${1#*=}" ;;
    --config=*) CONFIG="${1#*=}" ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$WORKDIR" ]] || { echo "error: --workdir=DIR (on storage every node sees) is required" >&2; exit 2; }
[[ "$NODES" =~ ^[1-9][0-9]*$ && "$GPUS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --nodes/--gpus-per-node take whole numbers" >&2; exit 2; }

command=(python -m hdb_jax.train --config="$CONFIG" --workdir="$WORKDIR" --config.distributed.auto=True
         "${EXTRA_ARGS[@]}")
printf -v quoted '%q ' "${command[@]}"
batch="#!/usr/bin/env bash
#SBATCH --job-name=hdb-train
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=$GPUS
#SBATCH --time=$TIME
#SBATCH --requeue
#SBATCH --output=$WORKDIR/slurm-%j.out${PARTITION:+
#SBATCH --partition=$PARTITION}
set -euo pipefail
cd $(printf '%q' "$REPO_ROOT")
srun ${quoted% }"

if ((DRY_RUN)); then
  echo "# dry run: the batch script, then the command that would submit it" >&2
  echo "$batch"
  echo "sbatch $WORKDIR/hdb_train.sbatch"
  exit 0
fi
mkdir -p "$WORKDIR"
echo "$batch" > "$WORKDIR/hdb_train.sbatch"
sbatch "$WORKDIR/hdb_train.sbatch"
