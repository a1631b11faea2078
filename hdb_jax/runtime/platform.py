"""The platform programs are traced for: JAX's default backend, or the one `compiling_for` names.

Code that picks an implementation by platform (the CPU's matrix-product convolutions,
hdb_jax.models.matmul_conv) asks `target_platform()`, so that a program compiled ahead of time for a
TPU on a CPU host (hdb_jax.aot) is traced as it would be on the TPU.
"""

import contextlib
import contextvars
from typing import Iterator

import jax

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar("target", default=None)


def target_platform() -> str:
  """'cpu', 'gpu', 'tpu', ...: the platform named by the innermost `compiling_for`, else JAX's
  default backend."""
  return _TARGET.get() or jax.default_backend()


@contextlib.contextmanager
def compiling_for(platform: str) -> Iterator[None]:
  """Within: programs are traced for `platform` (jax.jit(...).lower() runs inside)."""
  token = _TARGET.set(platform)
  try:
    yield
  finally:
    _TARGET.reset(token)
