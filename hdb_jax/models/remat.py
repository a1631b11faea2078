"""Per-block rematerialization of the diffusers and transformers Flax modules, without changing
them: within `rematerialized(policy, classes)`, every call of a module of `classes` (a UNet's down,
mid and up blocks; a ViT's or CLIP's encoder layers) runs under `flax.linen.checkpoint`, so the
backward pass keeps the blocks' inputs and outputs (and what the policy saves) and recomputes the
rest one block at a time. Parameters and numbers are unchanged.

    with rematerialized("dots", UNET_BLOCKS):
      loss, grads = jax.value_and_grad(loss_fn)(params)   # traced here: less training memory

Policies (REMAT_POLICIES): "none" (keep every activation), "full" (save nothing inside a block),
"dots" (save the matrix products without batch dimensions: the projections, not the attention
scores). One jax.checkpoint around a whole loss saves nothing at the peak: XLA's compiled SD1.5
temporaries are the same as with none (configs/hyper.py's docstring has the measured table).
"""

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax

from hdb_jax.errors import ConfigError
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers.models.unets.unet_2d_blocks_flax import (
  FlaxCrossAttnDownBlock2D,
  FlaxCrossAttnUpBlock2D,
  FlaxDownBlock2D,
  FlaxUNetMidBlock2DCrossAttn,
  FlaxUpBlock2D,
)
from transformers.models.clip.modeling_flax_clip import FlaxCLIPEncoderLayer
from transformers.models.vit.modeling_flax_vit import FlaxViTLayer

# name -> the jax.checkpoint policy inside each block (None: save nothing); "none": no remat
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
  "none": None,
  "full": None,
  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
UNET_BLOCKS = (
  FlaxCrossAttnDownBlock2D,
  FlaxDownBlock2D,
  FlaxUNetMidBlock2DCrossAttn,
  FlaxCrossAttnUpBlock2D,
  FlaxUpBlock2D,
)
ENCODER_LAYERS = (FlaxViTLayer, FlaxCLIPEncoderLayer)

_STATIC = (bool, int, float, str, type(None))
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_remat", default=False)


def check_remat(policy: str) -> str:
  """`policy` if it names one of REMAT_POLICIES, else ConfigError."""
  if policy not in REMAT_POLICIES:
    raise ConfigError(f"remat must be one of {sorted(REMAT_POLICIES)}, not {policy!r}")
  return policy


def _checkpointed_call(policy: str, module: nn.Module, args: tuple, kwargs: dict) -> Any:
  """module(*args, **kwargs) under flax.linen.checkpoint: arrays are traced arguments, Python
  values (deterministic=True) stay static."""
  static = {k: v for k, v in kwargs.items() if isinstance(v, _STATIC)}
  traced = {k: v for k, v in kwargs.items() if k not in static}

  def call(block: nn.Module, positional: tuple, keywords: dict) -> Any:
    token = _INSIDE.set(True)  # the call below comes back through the interceptor
    try:
      return type(block).__call__(block, *positional, **keywords, **static)
    finally:
      _INSIDE.reset(token)

  return nn.checkpoint(call, policy=REMAT_POLICIES[policy])(module, args, traced)


@contextlib.contextmanager
def rematerialized(policy: str, classes: tuple[type, ...] = UNET_BLOCKS) -> Iterator[None]:
  """Within: calls of modules of `classes` traced here are rematerialized by `policy` (none:
  nothing changes)."""
  if check_remat(policy) == "none":
    yield
    return

  def interceptor(next_fun, args, kwargs, context):
    if (
      context.method_name == "__call__"
      and isinstance(context.module, classes)
      and not _INSIDE.get()
    ):
      return _checkpointed_call(policy, context.module, args, kwargs)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield
