"""The two ways adapters are applied, with one math: delta W = A B on each targeted Dense.

merge:   params' = params + A B (one identity), then a plain apply.
batched: factors carry a leading batch axis; an `nn.intercept_methods` interceptor adds
         (x A_i) B_i to example i's output of each targeted Dense. delta W is never formed.
"""

import contextlib
from typing import Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from hdb_jax.adapters.lora import Factors


def merge(params: Mapping[str, object], factors: Factors, scale: float = 1.0) -> dict:
  """{'unet': tree, 'text_encoder': tree} + A B on each factor's kernel; untouched leaves are
  shared.

  factors: path -> (A [n, r], B [r, m]) without a batch axis; path starts with the model name.
  """
  out = dict(params)
  by_model: dict[str, dict[tuple[str, ...], jax.Array]] = {}
  for path, (a, b) in factors.items():
    if a.ndim != 2:
      raise ValueError(f"merge takes one identity's factors; {path} has A of shape {a.shape}")
    model, rest = path.split("/", 1)
    by_model.setdefault(model, {})[tuple(rest.split("/")) + ("kernel",)] = scale * (a @ b)
  for model, deltas in by_model.items():
    if model not in params:
      raise KeyError(f"adapter for model {model!r}, which is not in the parameters")
    flat = traverse_util.flatten_dict(params[model])
    for key, delta in deltas.items():
      if key not in flat:
        raise KeyError(f"adapter layer {model}/{'/'.join(key)} is not in the {model} parameters")
      flat[key] = flat[key] + delta.astype(flat[key].dtype)
    out[model] = traverse_util.unflatten_dict(flat)
  return out


def model_factors(factors: Factors, model: str) -> Factors:
  """The factors of one model, keyed by the path inside it (prefix removed)."""
  prefix = model + "/"
  return {path[len(prefix) :]: f for path, f in factors.items() if path.startswith(prefix)}


@contextlib.contextmanager
def batched_adapters(factors: Factors, scale: float = 1.0) -> Iterator[None]:
  """Within this context, module applies add (x A_i) B_i to each targeted Dense's output.

  factors: module path (inside the model being applied) -> (A [batch, n, r], B [batch, r, m]).
  The Dense input's leading axis is the batch: x [batch, ..., n] -> y [batch, ..., m]. Exiting the
  context checks that every factor was used, so a path that names no module is an error, not a
  silent no-op.
  """
  used = set()

  def interceptor(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name != "__call__" or not isinstance(context.module, nn.Dense):
      return y
    path = "/".join(context.module.path)
    if path not in factors:
      return y
    used.add(path)
    a, b = factors[path]
    x = args[0]
    if a.shape[0] != x.shape[0]:
      raise ValueError(f"{path}: {a.shape[0]} adapter sets for a batch of {x.shape[0]}")
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, n]: a plain batched matmul for XLA
    low = jnp.einsum("btn,bnr->btr", tokens, a.astype(x.dtype))
    delta = jnp.einsum("btr,brm->btm", low, b.astype(x.dtype)).reshape(y.shape)
    return y + (scale * delta).astype(y.dtype)

  with nn.intercept_methods(interceptor):
    yield
  unused = sorted(set(factors) - used)
  if unused:
    raise ValueError(f"{len(unused)} adapter layers matched no Dense module, e.g. {unused[0]!r}")


def tile_factors(factors: Factors, copies: int) -> Factors:
  """Stacks `copies` copies of the batch of factors, for a batch made as concat([x] * copies)
  (e.g. classifier-free guidance's [unconditional; conditional] batch)."""
  return {
    p: (jnp.concatenate([a] * copies), jnp.concatenate([b] * copies))
    for p, (a, b) in factors.items()
  }
