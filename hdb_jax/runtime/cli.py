"""What every command-line entry point shares: flags, logging, and one-line failures for user
errors.

A command's `__main__.py` is thin: it defines its flags here, logs its resolved config
(hdb_jax.runtime.overview.log_config) and calls one library function, which logs a parameter table
of what it loaded.
"""

import logging
import sys
from typing import Callable

import jax
from absl import app, flags
from ml_collections import config_flags

from hdb_jax.errors import UserError
from hdb_jax.runtime.quiet import silence_flax_deprecations


def define_config_flags(default_config: str, workdir_required: bool = True) -> None:
  """--config=configs/X.py[:variant] with --config.key=value overrides, and --workdir (required by
  default)."""
  config_flags.DEFINE_config_file(
    "config",
    default_config,
    "Config file, e.g. configs/lidb.py:tiny; override fields with --config.key=value.",
    lock_config=True,
  )
  flags.DEFINE_string("workdir", None, "Output directory (created; reused to resume).")
  if workdir_required:
    flags.mark_flag_as_required("workdir")


class _DropOrbaxInfo(logging.Filter):
  """orbax logs every file it writes at INFO; keep its warnings and errors only."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def quiet_orbax() -> None:
  for handler in logging.getLogger().handlers + logging.getLogger("absl").handlers:
    handler.addFilter(_DropOrbaxInfo())


def run_main(main: Callable[[list[str]], None], max_args: int = 1) -> None:
  """absl app.run with our logging: a UserError prints one line and exits 1 (its traceback with
  --verbosity=1).

  Any other exception (a bug, an XLA out-of-memory error) propagates with its traceback and a
  non-zero exit. Sharded random numbers use the partitionable threefry (each device draws its own
  shard; the values do not depend on the mesh).
  """
  silence_flax_deprecations()
  jax.config.update("jax_threefry_partitionable", True)

  def guarded(argv):
    if len(argv) > max_args:  # argv[0] is the program; a command may take a subcommand
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[max_args:])}")
    logging.getLogger().setLevel(logging.INFO)
    # "Unable to initialize backend 'tpu'"
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    quiet_orbax()
    try:
      main(argv)
    except UserError as e:
      if flags.FLAGS.get_flag_value("verbosity", 0) > 0:
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(guarded)
