"""The command-line contract: a UserError is one line `error: ...` and exit 1; anything else keeps
its traceback.

The contract is checked in this process through absl's app.run, once through Python's own handler of
uncaught exceptions, and on two real commands; none loads or compiles a model.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from hdb_jax.errors import UserError
from hdb_jax.models import ModelLoadError
from hdb_jax.runtime.cli import run_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str]) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def run_main_raising(monkeypatch):
  """Runs a main that raises `error` through hdb_jax.runtime.cli.run_main (absl's app.run, as every
  CLI), in this process: a user error ends in SystemExit; anything else propagates (Python then
  prints its traceback)."""

  def run(error: BaseException, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["hdb_jax_cli_test", *argv])

    def main(_):
      raise error

    try:
      run_main(main)
    finally:
      flags.FLAGS.unparse_flags()  # as before: this process's flags were not parsed

  return run


@pytest.mark.parametrize(
  "error, message",
  [
    (UserError("photo.jpg: not an image file"), "photo.jpg: not an image file"),
    (ModelLoadError("model directory not found: /x"), "model directory not found: /x"),
  ],
)
def test_user_error_is_one_line_and_exit_1(run_main_raising, capsys, error, message):
  with pytest.raises(SystemExit) as exit_info:
    run_main_raising(error)
  assert exit_info.value.code == 1
  assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_user_error_with_verbosity_keeps_its_traceback(run_main_raising):
  with pytest.raises(UserError, match="photo.jpg: not an image file"):
    run_main_raising(UserError("photo.jpg: not an image file"), "--verbosity=1")


@pytest.mark.parametrize(
  "error",
  [
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 17179869184 bytes"),
    KeyError("unet/down_blocks_0"),
    ValueError("an internal invariant broke"),
  ],
)
def test_other_errors_keep_their_traceback(run_main_raising, capsys, error):
  """An XLA out-of-memory error or a bug is not a user error: it propagates, so Python prints where
  it happened and exits non-zero."""
  with pytest.raises(type(error)) as raised:
    run_main_raising(error)
  assert raised.value is error
  assert not any(line.startswith("error:") for line in capsys.readouterr().err.splitlines())


def test_an_uncaught_error_prints_a_traceback_and_exits_non_zero():
  code = (
    "from hdb_jax.runtime.cli import run_main\n"
    "def main(argv):\n  raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory')\n"
    "run_main(main)\n"
  )
  out = _run([sys.executable, "-c", code])
  assert out.returncode != 0 and "Traceback (most recent call last)" in out.stderr
  assert out.stderr.strip().splitlines()[-1] == "RuntimeError: RESOURCE_EXHAUSTED: Out of memory"


def test_generate_with_a_missing_identity_file_is_one_line(tmp_path):
  missing = tmp_path / "me.safetensors"
  out = _run(
    [sys.executable, "-m", "hdb_jax.generate", f"--identity={missing}", f"--out={tmp_path / 'out'}"]
  )
  assert out.returncode == 1, out.stderr
  assert out.stderr.strip().splitlines() == [f"error: {missing}: no such identity file"]
  assert not (tmp_path / "out").exists()


def test_personalize_with_a_missing_model_directory_is_one_line(tmp_path):
  missing = tmp_path / "no_model"
  out = _run(
    [
      sys.executable,
      "-m",
      "hdb_jax.personalize",
      "--config=configs/personalize.py:tiny",
      f"--config.image={tmp_path / 'face.png'}",
      f"--config.pretrained={missing}",
      f"--workdir={tmp_path / 'out'}",
    ]
  )
  assert out.returncode == 1, out.stderr
  assert "Traceback" not in out.stderr
  errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
  assert errors == out.stderr.strip().splitlines()[-1:]  # absl may log the model it loads before it
  assert errors[0].startswith(f"error: model directory not found: '{missing}'")


def test_parameter_table_counts_each_component_and_the_total():
  from hdb_jax.runtime.overview import log_parameters

  tree = {"unet": {"w": np.zeros((2, 3)), "b": np.zeros(4)}, "vae": np.zeros((5, 5))}
  rows = [line.split() for line in log_parameters({"sd": tree}).splitlines()]
  assert rows == [["sd/unet", "10"], ["sd/vae", "25"], ["sd", "35"]]
