"""The UNet's attention kernel, chosen per backend without changing diffusers' modules: within
`attention_kernel(kind)`, every diffusers `FlaxAttention` call traced there computes
softmax(q kᵀ scale) v with `kind`'s kernel from the module's own projections (same parameters, the
same numbers up to float rounding).

    with attention_kernel("dot_product"):
      out = unet.apply({"params": params}, sample, t, text)

Kinds (ATTENTION_KINDS):
  einsum       diffusers' default: the full [heads, queries, keys] score matrix.
  chunked      diffusers' memory-efficient attention (queries in chunks, keys in 16k chunks).
  dot_product  jax.nn.dot_product_attention's XLA implementation.
  flash        on a TPU the Pallas flash-attention kernel where both sequence lengths are
               multiples of 128 and the head size is at most 128 or a multiple of it (SD1.5's
               self-attention at 64x64 and 32x32 latents; its 1280-wide blocks have 160-wide
               heads), run per shard under a mesh (runtime.mesh.traced_on); on a GPU cuDNN's flash
               attention where it takes the shapes (16-bit, head size a multiple of 8, <= 128);
               dot_product elsewhere.
  auto         flash on TPU and GPU, einsum on CPU. Chosen on SD1.5's 512 px training gradient
               compiled for one v5e chip (benchmarks/aot_attention.py): temporaries einsum
               2.2 GiB, chunked 741 MiB, dot_product (XLA) 3.5 GiB, flash 771 MiB; flash needs
               no loop. On a GPU, cuDNN is unmeasured here (no GPU was lent).
"""

import contextlib
from typing import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from hdb_jax.errors import ConfigError
from hdb_jax.runtime.platform import target_platform
from hdb_jax.runtime.quiet import silence_flax_deprecations

silence_flax_deprecations()

# pylint: disable=wrong-import-position
from diffusers.models.attention_flax import FlaxAttention

ATTENTION_KINDS = ("einsum", "chunked", "dot_product", "flash", "auto")
_TPU_FLASH_BLOCK = 128  # the Pallas TPU kernel's default block along both sequence axes


def check_attention(kind: str) -> str:
  """`kind` if it is one of ATTENTION_KINDS, else ConfigError."""
  if kind not in ATTENTION_KINDS:
    raise ConfigError(f"attention must be one of {list(ATTENTION_KINDS)}, not {kind!r}")
  return kind


def resolved_kind(kind: str) -> str:
  """`kind` with auto made concrete for the platform programs are traced for."""
  if check_attention(kind) != "auto":
    return kind
  return "einsum" if target_platform() == "cpu" else "flash"


def _cudnn_takes(q: jax.Array) -> bool:
  head = q.shape[-1]
  return q.dtype in (jnp.bfloat16, jnp.float16) and head % 8 == 0 and head <= 128


def _tpu_flash_takes(q: jax.Array, k: jax.Array) -> bool:
  head = q.shape[-1]
  lengths = q.shape[1] % _TPU_FLASH_BLOCK == 0 and k.shape[1] % _TPU_FLASH_BLOCK == 0
  return lengths and (head <= _TPU_FLASH_BLOCK or head % _TPU_FLASH_BLOCK == 0)


def _per_shard(kernel: Callable[..., jax.Array], q: jax.Array, k: jax.Array, v: jax.Array):
  """kernel(q, k, v) on each device's slice of the batch when traced under a mesh (a Pallas
  kernel cannot be partitioned by XLA): the batch is split over every mesh axis, as the training
  steps split it (runtime.mesh.batch_sharding)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return kernel(q, k, v)
  spec = PartitionSpec(mesh.axis_names)
  return jax.shard_map(kernel, mesh=mesh, in_specs=(spec,) * 3, out_specs=spec, check_vma=False)(
    q, k, v
  )


def dot_product(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, flash: bool) -> jax.Array:
  """q [B, T, N, H], k and v [B, S, N, H] -> softmax(q kᵀ scale) v [B, T, N, H]; flash: the
  platform's flash kernel where it takes the shapes."""
  platform = target_platform()
  if flash and platform == "tpu" and _tpu_flash_takes(q, k):
    # pylint: disable=import-outside-toplevel
    from jax.experimental.pallas.ops.tpu.flash_attention import flash_attention

    def kernel(q, k, v):
      heads_first = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731  [B, N, T, H]
      out = flash_attention(heads_first(q), heads_first(k), heads_first(v), sm_scale=scale)
      return heads_first(out)

    return _per_shard(kernel, q, k, v)
  implementation = "cudnn" if flash and platform == "gpu" and _cudnn_takes(q) else "xla"
  return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=implementation)


def _attend(
  module: FlaxAttention,
  hidden_states: jax.Array,
  context=None,
  deterministic: bool = True,
  *,
  flash: bool,
) -> jax.Array:
  """FlaxAttention.__call__'s computation with dot_product in place of its score matrix."""
  context = hidden_states if context is None else context
  batch = hidden_states.shape[0]
  split = lambda x: jnp.reshape(x, (batch, -1, module.heads, module.dim_head))  # noqa: E731
  q, k, v = (
    split(module.query(hidden_states)),
    split(module.key(context)),
    split(module.value(context)),
  )
  out = dot_product(q, k, v, module.scale, flash).astype(q.dtype)
  out = module.proj_attn(jnp.reshape(out, (batch, -1, module.heads * module.dim_head)))
  return module.dropout_layer(out, deterministic=deterministic)


@contextlib.contextmanager
def attention_kernel(kind: str) -> Iterator[None]:
  """Within: FlaxAttention calls use `kind`'s kernel (einsum and chunked: the module's own, set by
  its use_memory_efficient_attention field; see with_attention)."""
  kind = resolved_kind(kind)
  if kind in ("einsum", "chunked"):
    yield
    return

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and isinstance(context.module, FlaxAttention):
      return _attend(context.module, *args, **kwargs, flash=kind == "flash")
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield
