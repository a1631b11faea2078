"""Per-block remat and the attention kernels: the same numbers as the plain UNet and ViT, and (for
remat, compiled for a TPU by libtpu) less memory.

The micro UNet (2 down, 1 mid, 2 up blocks; 2 transformer blocks) keeps the CPU compiles short.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from hdb_jax import models
from hdb_jax.errors import ConfigError
from hdb_jax.models.attention import dot_product, resolved_kind
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.runtime.platform import compiling_for


def _inputs(sd, batch=2, seed=0):
  size = sd.unet.config.sample_size
  keys = jax.random.split(jax.random.key(seed), 2)
  latents = jax.random.normal(keys[0], (batch, size, size, 4))
  text = jax.random.normal(keys[1], (batch, 7, sd.unet.config.cross_attention_dim))
  return latents, jnp.asarray([10, 900][:batch]), text


def _unet_loss(sd, policy):
  def loss(unet_params, latents, timesteps, text):
    with models.rematerialized(policy, models.UNET_BLOCKS):
      out = models.unet_apply(sd, unet_params, latents, timesteps, text)
    return jnp.mean(jnp.square(out))

  return loss


def _max_relative_difference(a, b):
  leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(a))
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in leaves) / scale


def _remat_count(fn, *args):
  """How many remat (jax.checkpoint) calls the gradient's jaxpr holds, nested jaxprs included."""
  return str(jax.make_jaxpr(jax.grad(fn))(*args)).count("remat2[")


def test_block_remat_gives_the_same_gradients_one_checkpoint_per_block(micro_sd):
  args = (micro_sd.params["unet"], *_inputs(micro_sd))
  plain = jax.jit(jax.grad(_unet_loss(micro_sd, "none")))(*args)
  rematerialized = jax.jit(jax.grad(_unet_loss(micro_sd, "dots")))(*args)
  # remat recomputes the same float32 operations: only XLA's fusion choices may differ
  assert _max_relative_difference(plain, rematerialized) < 1e-5
  config = micro_sd.unet.config
  blocks = len(config.down_block_types) + 1 + len(config.up_block_types)
  assert _remat_count(_unet_loss(micro_sd, "none"), *args) == 0
  assert _remat_count(_unet_loss(micro_sd, "dots"), *args) == blocks


def test_encoder_layer_remat_gives_the_same_gradients():
  from hdb_jax.models.image_encoder import image_features, load_image_encoder

  encoder = load_image_encoder("tiny-vit")
  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)

  def loss(policy):
    def fn(params):
      with models.rematerialized(policy, models.ENCODER_LAYERS):
        return jnp.mean(jnp.square(image_features(encoder, params, images)))

    return fn

  plain = jax.grad(loss("none"))(encoder.params)
  rematerialized = jax.grad(loss("full"))(encoder.params)
  assert _max_relative_difference(plain, rematerialized) < 1e-5
  layers = encoder.params["encoder"]["layer"]
  assert _remat_count(loss("full"), encoder.params) == len(layers)


def test_block_remat_lowers_compiled_tpu_memory(micro_sd):
  """The micro UNet's training gradient compiled for one v5e chip (libtpu, no TPU): temporaries
  with remat "dots" well under those of no remat. Measured (batch 8, 32x32 latents): none 341 MiB,
  full 205 MiB, dots 228 MiB; asserted: dots < 0.8 x none. SD1.5's figures are in
  configs/hyper.py's docstring."""
  from hdb_jax.aot.topology import tpu_target

  device = SingleDeviceSharding(tpu_target("v5e:2x2").devices[0])
  shape = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)  # noqa: E731
  size, width = 32, micro_sd.unet.config.cross_attention_dim
  args = (
    jax.tree.map(shape, micro_sd.params["unet"]),
    jax.ShapeDtypeStruct((8, size, size, 4), jnp.float32, sharding=device),
    jax.ShapeDtypeStruct((8,), jnp.int32, sharding=device),
    jax.ShapeDtypeStruct((8, 7, width), jnp.float32, sharding=device),
  )
  temporaries = {}
  for policy in ("none", "dots"):
    with compiling_for("tpu"):
      compiled = jax.jit(jax.grad(_unet_loss(micro_sd, policy))).lower(*args).compile()
    temporaries[policy] = compiled.memory_analysis().temp_size_in_bytes
  assert temporaries["dots"] < 0.8 * temporaries["none"], temporaries


def test_remat_policy_must_be_known():
  with pytest.raises(ConfigError, match="remat must be one of"):
    with models.rematerialized("blocks"):
      pass


@pytest.mark.parametrize("kind", ["chunked", "dot_product", "flash"])
def test_attention_kernels_compute_the_unets_numbers(micro_sd, kind):
  """Every kernel gives the einsum UNet's output (float32: rounding only; flash is dot_product
  on a CPU)."""
  latents, timesteps, text = _inputs(micro_sd)
  params = micro_sd.params["unet"]
  reference = models.unet_apply(micro_sd, params, latents, timesteps, text)
  out = models.unet_apply(models.with_attention(micro_sd, kind), params, latents, timesteps, text)
  np.testing.assert_allclose(out, reference, atol=2e-5 * float(jnp.max(jnp.abs(reference))))


def test_attention_auto_and_unknown_kinds():
  assert resolved_kind("auto") == "einsum"  # this suite runs on the CPU
  with compiling_for("tpu"):
    assert resolved_kind("auto") == "flash"
  with pytest.raises(ConfigError, match="attention must be one of"):
    resolved_kind("sdpa")


def test_flash_takes_the_tpu_kernel_where_the_lengths_allow():
  """Traced for a TPU, 256 queries x 256 keys go to the Pallas kernel (a Mosaic custom call);
  cross-attention's 77 text tokens fall back to XLA."""
  from hdb_jax.aot.topology import tpu_target

  device = SingleDeviceSharding(tpu_target("v5e:2x2").devices[0])

  def lowered(keys):
    q = jax.ShapeDtypeStruct((1, 256, 2, 64), jnp.bfloat16, sharding=device)
    kv = jax.ShapeDtypeStruct((1, keys, 2, 64), jnp.bfloat16, sharding=device)
    with compiling_for("tpu"):
      fn = jax.jit(lambda q, k, v: dot_product(q, k, v, 0.125, flash=True))
      return fn.lower(q, kv, kv).as_text()

  assert "tpu_custom_call" in lowered(256)
  assert "tpu_custom_call" not in lowered(77)


def test_flash_runs_per_shard_on_a_tpu_mesh():
  """A Pallas kernel cannot be partitioned by XLA: traced with the mesh as the abstract mesh (as
  Phase 1's step is: mesh_lib.traced_on), it runs on each device's slice of the batch, and the
  batch-sharded program compiles for 4 v5e chips."""
  from hdb_jax.aot.topology import tpu_target

  mesh = mesh_lib.make_mesh((2, 2), tpu_target("v5e:2x2").devices)
  split = mesh_lib.batch_sharding(mesh)
  q = jax.ShapeDtypeStruct((8, 256, 2, 64), jnp.bfloat16, sharding=split)
  attend = lambda q, k, v: dot_product(q, k, v, 0.125, flash=True)  # noqa: E731
  with compiling_for("tpu"):
    compiled = jax.jit(mesh_lib.traced_on(mesh, attend)).lower(q, q, q).compile()
  assert "tpu_custom_call" in compiled.as_text()


def test_fsdp_rule_splits_large_leaves_on_fsdp():
  from hdb_jax.aot.topology import tpu_target

  mesh = mesh_lib.make_mesh((2, 4), tpu_target("v5e:2x4").devices)
  tree = {
    "kernel": jax.ShapeDtypeStruct((1280, 5120), jnp.float32),
    "bias": jax.ShapeDtypeStruct((5120,), jnp.float32),
    "odd": jax.ShapeDtypeStruct((1001, 999), jnp.float32),
  }
  sharded = mesh_lib.fsdp_shardings(tree, mesh, shard=True)
  assert sharded["kernel"] == NamedSharding(mesh, PartitionSpec(None, "fsdp"))
  assert sharded["bias"] == mesh_lib.replicated(mesh)  # under min_size
  assert sharded["odd"] == mesh_lib.replicated(mesh)  # no axis divides by 4
  assert all(
    s == mesh_lib.replicated(mesh)
    for s in jax.tree.leaves(mesh_lib.fsdp_shardings(tree, mesh, False))
  )
