"""JAX's persistent compilation cache: compile once, reuse across processes and runs."""

import os

import jax


def default_cache_dir() -> str:
  root = os.environ.get("HDB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hdb_jax"))
  return os.path.join(root, "jax_cache")


def enable_compilation_cache(directory: str | None = None) -> str:
  """Turns the persistent cache on (every compiled program is cached, however quick); returns the
  dir."""
  directory = directory or default_cache_dir()
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
