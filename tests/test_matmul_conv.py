"""Convolutions with a matrix-product backward (models.matmul_conv): same values and gradients as
flax's nn.Conv, and the same UNet training gradients as XLA's own convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdb_jax import adapters, models
from hdb_jax.diffusion.loss import per_example_loss
from hdb_jax.models import matmul_conv

CONVS = [
  dict(kernel_size=(3, 3), padding=((1, 1), (1, 1))),  # ResNet / upsampler conv
  dict(kernel_size=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))),  # downsampler
  dict(kernel_size=(1, 1), padding="VALID"),  # shortcut, proj_in/out
  dict(kernel_size=(3, 3), padding="SAME"),
  dict(kernel_size=(3, 3), strides=(2, 2), padding="SAME"),
  # uneven: catches swapped axes
  dict(kernel_size=(2, 3), strides=(1, 2), padding=((0, 1), (2, 0))),
]


def _loss(module, params, x, use_matmul):
  """A non-linear scalar of the conv output, so every output element gets its own cotangent."""
  if use_matmul:
    with matmul_conv.matmul_conv_backward():
      return jnp.sum(jnp.sin(module.apply(params, x)))
  return jnp.sum(jnp.sin(module.apply(params, x)))


@pytest.mark.parametrize("matmul_forward_max", [0, 10**9], ids=["conv-forward", "matmul-forward"])
@pytest.mark.parametrize(
  "conv", CONVS, ids=lambda c: f"{c['kernel_size']}-{c.get('strides', (1, 1))}-{c['padding']}"
)
@pytest.mark.parametrize("size", [8, 7])
def test_values_and_gradients_match_flax_conv(monkeypatch, conv, size, matmul_forward_max):
  monkeypatch.setattr(matmul_conv, "MATMUL_FORWARD_MAX_POSITIONS", matmul_forward_max)
  module = nn.Conv(6, **conv)
  x = jax.random.normal(jax.random.key(0), (2, size, size, 5))
  params = module.init(jax.random.key(1), x)
  with matmul_conv.matmul_conv_backward():
    ours = module.apply(params, x)
  theirs = module.apply(params, x)
  grads = [jax.grad(_loss, argnums=(1, 2))(module, params, x, use) for use in (True, False)]
  # fp32 sums of <= 45 products of O(1) numbers in another order: ~1e-6; 1e-5 leaves margin.
  np.testing.assert_allclose(ours, theirs, atol=1e-5)
  for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(got, want, atol=1e-5)
  assert float(jnp.abs(grads[0][1]).max()) > 1e-2  # the input gradient is not trivially zero


def test_other_convolutions_fall_back_to_flax():
  """Grouped or dilated convolutions are not rerouted (conv2d does not implement them)."""
  for module in (nn.Conv(4, (3, 3), feature_group_count=2), nn.Conv(4, (3, 3), kernel_dilation=2)):
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 4))
    params = module.init(jax.random.key(1), x)
    with matmul_conv.matmul_conv_backward():
      np.testing.assert_array_equal(module.apply(params, x), module.apply(params, x))
      # pylint: disable=protected-access
      assert matmul_conv._plain_conv_call(module.bind(params), x) is None


def test_switch_reads_the_environment(monkeypatch):
  monkeypatch.setenv("HDB_JAX_MATMUL_CONV", "0")
  assert not matmul_conv.matmul_conv_wanted()
  monkeypatch.setenv("HDB_JAX_MATMUL_CONV", "1")
  assert matmul_conv.matmul_conv_wanted()
  monkeypatch.delenv("HDB_JAX_MATMUL_CONV")
  assert matmul_conv.matmul_conv_wanted() == (jax.default_backend() == "cpu")
  monkeypatch.setenv("HDB_JAX_MATMUL_CONV", "yes")
  with pytest.raises(ValueError, match="HDB_JAX_MATMUL_CONV"):
    matmul_conv.matmul_conv_wanted()


def test_unet_training_gradients_match_xla_convolutions(monkeypatch, micro_dir):
  """The finetune's gradient (diffusion loss -> LoRA factors through the whole micro UNet) is the
  same with the matmul convolutions as with XLA's."""
  sd = models.load_stable_diffusion(micro_dir)
  layers = adapters.select_layers(sd.params)
  lora = jax.tree.map(lambda x: x[None], adapters.init_lora(layers, 2, jax.random.key(0)))
  # init_lora's B is zero, which would make A's gradient zero: give B values too.
  lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), lora)
  rng = np.random.default_rng(0)
  latents = jnp.asarray(
    rng.standard_normal((1, sd.resolution // 8, sd.resolution // 8, 4)), jnp.float32
  )
  ids = jnp.asarray(models.tokenize(sd, ["a sks face"]))
  keys = jax.random.split(jax.random.key(2), 1)

  def grads(setting):
    monkeypatch.setenv("HDB_JAX_MATMUL_CONV", setting)
    loss = lambda t: jnp.sum(
      per_example_loss(sd, sd.params, adapters.lora_factors(t), latents, ids, keys)
    )
    return jax.jit(jax.value_and_grad(loss))(lora)  # a fresh jit: traced under this setting

  (loss_mm, g_mm), (loss_xla, g_xla) = grads("1"), grads("0")
  np.testing.assert_allclose(loss_mm, loss_xla, rtol=1e-5)
  flat_mm, flat_xla = (
    np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g_mm, g_xla)
  )
  # Relative to the gradient's scale: fp32 rounding through ~40 layers forward and back.
  np.testing.assert_allclose(flat_mm, flat_xla, atol=1e-4 * np.abs(flat_xla).max())
  assert np.abs(flat_xla).max() > 0
