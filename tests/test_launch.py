"""launch/: every script parses (bash -n), is strict (set -euo pipefail), and in --dry-run prints
the gcloud commands it would run, with the flags given; tpu_run.sh's resume path is played with
DRY_RUN_STATES / DRY_RUN_RESULTS (the TPU states and exit codes a dry run pretends to see)."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = sorted(n for n in os.listdir(LAUNCH) if n.endswith(".sh"))
TPU = ["--name=hdb", "--zone=us-central2-b", "--project=proj"]


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  return subprocess.run(
    ["bash", os.path.join(LAUNCH, script), *args],
    capture_output=True,
    text=True,
    timeout=60,
    env={**os.environ, "TMPDIR": "/tmp", **(env or {})},
    cwd="/",
  )


def _lines(out: subprocess.CompletedProcess, prefix: str) -> list[str]:
  return [line for line in out.stdout.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse_and_are_strict(script):
  assert (
    subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)], capture_output=True).returncode
    == 0
  )
  text = open(os.path.join(LAUNCH, script), encoding="utf-8").read()
  if script != "common.sh":  # sourced by the others, after their own `set -euo pipefail`
    assert "set -euo pipefail" in text and "--dry-run" in text
    assert os.access(os.path.join(LAUNCH, script), os.X_OK)
    help_text = _run(script, "--help")
    assert help_text.returncode == 0 and "--dry-run" in help_text.stdout


def test_create_dry_run():
  out = _run("tpu_create.sh", *TPU, "--type=v4-32", "--spot", "--dry-run")
  assert out.returncode == 0, out.stderr
  assert out.stdout.splitlines() == [
    "gcloud compute tpus tpu-vm create hdb --accelerator-type=v4-32 "
    "--version=tpu-ubuntu2204-base --spot --zone=us-central2-b --project=proj"
  ]
  queued = _run(
    "tpu_create.sh",
    *TPU,
    "--type=v5litepod-8",
    "--version=v2-alpha-tpuv5-lite",
    "--queued",
    "--dry-run",
  )
  assert queued.stdout.splitlines() == [
    "gcloud compute tpus queued-resources create hdb --node-id=hdb --accelerator-type=v5litepod-8 "
    "--runtime-version=v2-alpha-tpuv5-lite --zone=us-central2-b --project=proj",
    "gcloud compute tpus queued-resources describe hdb --zone=us-central2-b --project=proj "
    "--format=value\\(state.state\\)",
  ]


def test_install_dry_run():
  out = _run("tpu_install.sh", *TPU, "--extras=data,face", "--dry-run")
  assert out.returncode == 0, out.stderr
  tar, scp, ssh = out.stdout.split("\n", 2)
  assert tar.startswith("tar --exclude=.git") and tar.endswith(f"-C {REPO} .")
  assert scp == (
    "gcloud compute tpus tpu-vm scp /tmp/hdb_jax-hdb.tgz hdb:hdb_jax.tgz --worker=all "
    "--zone=us-central2-b --project=proj"
  )
  assert ssh.startswith(
    "gcloud compute tpus tpu-vm ssh hdb --worker=all --zone=us-central2-b --project=proj"
  )
  for part in (
    "pip install -q -e \\'.[data,face]\\'",
    "jax[tpu]==",
    "apt-get install -y -qq gcsfuse",
  ):
    assert part in ssh, part


def test_run_dry_run_passes_phase_flags_and_mounts_the_bucket():
  out = _run(
    "tpu_run.sh",
    *TPU,
    "--phase=train",
    "--workdir=gs://bkt/hyper",
    "--dry-run",
    "--",
    "--config.data.data_dir=gs://bkt/tfds",
    "--config.steps=10",
  )
  assert out.returncode == 0, out.stderr
  describe, ssh = out.stdout.strip().split("\n", 1)
  assert describe.startswith(
    "gcloud compute tpus tpu-vm describe hdb --zone=us-central2-b --project=proj"
  )
  assert ssh.startswith("gcloud compute tpus tpu-vm ssh hdb --worker=all")
  assert "gcsfuse --implicit-dirs --rename-dir-limit=1000000 bkt /gcs/bkt" in ssh
  assert (
    "python3 -m hdb_jax.train --config=configs/hyper.py --workdir=/gcs/bkt/hyper "
    "--config.data.data_dir=gs://bkt/tfds --config.steps=10"
  ) in ssh
  assert "create" not in out.stdout  # the TPU is READY: nothing recreated
  other = _run(
    "tpu_run.sh",
    *TPU,
    "--phase=preoptimize",
    "--config=configs/lidb.py:tiny",
    "--workdir=/tmp/p0",
    "--dry-run",
  )
  assert (
    "python3 -m hdb_jax.preoptimize --config=configs/lidb.py:tiny --workdir=/tmp/p0" in other.stdout
  )
  assert "gcsfuse" not in other.stdout and "lost if preempted" in other.stderr


def test_run_resumes_after_preemption():
  out = _run(
    "tpu_run.sh",
    *TPU,
    "--phase=train",
    "--workdir=gs://bkt/hyper",
    "--spot",
    "--queued",
    "--type=v4-32",
    "--dry-run",
    env={"DRY_RUN_STATES": "READY,PREEMPTED", "DRY_RUN_RESULTS": "255,0"},
  )
  assert out.returncode == 0, out.stderr
  commands = [" ".join(line.split()[:5]) for line in out.stdout.splitlines()]
  assert commands == [
    "gcloud compute tpus tpu-vm describe",  # READY
    "gcloud compute tpus tpu-vm ssh",  # the run: killed by the preemption (exit 255)
    "gcloud compute tpus tpu-vm describe",  # PREEMPTED
    "gcloud compute tpus queued-resources delete",
    "gcloud compute tpus queued-resources create",
    "gcloud compute tpus queued-resources describe",  # wait for ACTIVE
    "tar --exclude=.git --exclude=__pycache__ --exclude=\\*.egg-info --exclude=.venv",
    "gcloud compute tpus tpu-vm scp",
    "gcloud compute tpus tpu-vm ssh",  # reinstall
    "gcloud compute tpus tpu-vm ssh",  # the same command again: resumes from the checkpoint
  ]
  runs = _lines(out, "gcloud compute tpus tpu-vm ssh")
  assert runs[0] == runs[2]
  assert "--accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base --spot" in out.stdout
  assert "restart 1 of 5" in out.stderr


def test_run_gives_up_on_real_errors_and_repeated_preemption():
  real = _run(
    "tpu_run.sh",
    *TPU,
    "--phase=train",
    "--workdir=gs://b/h",
    "--dry-run",
    env={"DRY_RUN_RESULTS": "1"},
  )
  assert real.returncode == 2 and "a real error, not retrying" in real.stderr
  assert len(_lines(real, "gcloud compute tpus tpu-vm ssh")) == 1
  lost = _run(
    "tpu_run.sh",
    *TPU,
    "--phase=train",
    "--workdir=gs://b/h",
    "--max-restarts=1",
    "--dry-run",
    env={"DRY_RUN_STATES": "READY,PREEMPTED", "DRY_RUN_RESULTS": "255"},
  )
  assert lost.returncode == 2 and "giving up (--max-restarts=1)" in lost.stderr
  assert len(_lines(lost, "gcloud compute tpus tpu-vm create")) == 1


@pytest.mark.parametrize(
  "args, message",
  [
    (["--zone=z", "--phase=train", "--workdir=gs://b/x"], "--name"),
    (["--name=n", "--phase=train", "--workdir=gs://b/x"], "--zone"),
    (["--name=n", "--zone=z", "--phase=finetune", "--workdir=gs://b/x"], "--phase must be"),
    (["--name=n", "--zone=z", "--phase=train"], "--workdir is required"),
    (["--name=n", "--zone=z", "--phase=train", "--workdir=gs://b/x", "--bogus"], "unknown option"),
  ],
)
def test_run_bad_options(args, message):
  out = _run("tpu_run.sh", *args, "--dry-run")
  assert out.returncode == 2 and message in out.stderr and not out.stdout


def test_delete_dry_run():
  assert _run("tpu_delete.sh", *TPU, "--dry-run").stdout.strip() == (
    "gcloud compute tpus tpu-vm delete hdb --quiet --zone=us-central2-b --project=proj"
  )
  assert _run("tpu_delete.sh", *TPU, "--queued", "--dry-run").stdout.strip() == (
    "gcloud compute tpus queued-resources delete hdb --force --quiet --zone=us-central2-b "
    "--project=proj"
  )


def test_gpu_slurm_dry_run():
  out = _run(
    "gpu_slurm.sh",
    "--nodes=4",
    "--gpus-per-node=8",
    "--workdir=/shared/hyper",
    "--partition=gpu",
    "--dry-run",
    "--",
    "--config.batch_size=128",
  )
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  for directive in (
    "--nodes=4",
    "--ntasks-per-node=1",
    "--gpus-per-node=8",
    "--requeue",
    "--partition=gpu",
  ):
    assert f"#SBATCH {directive}" in lines
  assert (
    "srun python -m hdb_jax.train --config=configs/hyper.py --workdir=/shared/hyper "
    "--config.distributed.auto=True --config.batch_size=128"
  ) in lines
  assert lines[-1] == "sbatch /shared/hyper/hdb_train.sbatch"
  batch = "\n".join(lines[:-1])
  assert subprocess.run(["bash", "-n"], input=batch, text=True).returncode == 0
  assert _run("gpu_slurm.sh", "--nodes=0", "--workdir=/x", "--dry-run").returncode == 2
