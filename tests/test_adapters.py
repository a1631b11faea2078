"""Adapters: target selection, LiDB bases, counts, and merge == batched == dense reference."""

import hashlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdb_jax import adapters, models
from hdb_jax.adapters import LidbConfig

# Tiny layers are smaller than the paper's a=100: min(a, n) applies (n, m are 32 or 64 here).
TINY_LIDB = LidbConfig(a=100, b=50, rank=1, aux_seed=3)


@pytest.fixture(scope="module")
def layers(tiny_sd):
  return adapters.select_layers(tiny_sd.params)


def test_default_targets_select_the_papers_layers(tiny_sd, layers):
  per_model, leaf_names = {}, {}
  for layer in layers:
    per_model[layer.model] = per_model.get(layer.model, 0) + 1
    leaf = (
      "/".join(layer.path.split("/")[-3:])
      if layer.path.endswith("/proj")
      else layer.path.split("/")[-1]
    )
    leaf_names[leaf] = leaf_names.get(leaf, 0) + 1
  assert per_model == {
    "unet": 144,
    "text_encoder": 8,
  }  # 16 blocks x (2 attentions x 4 + GEGLU proj); 2 x 4
  assert leaf_names == {
    "to_q": 32,
    "to_k": 32,
    "to_v": 32,
    "to_out_0": 32,
    "ff/net_0/proj": 16,
    "q_proj": 2,
    "k_proj": 2,
    "v_proj": 2,
    "out_proj": 2,
  }
  geglu = next(l for l in layers if l.path.endswith("ff/net_0/proj"))
  # GEGLU's input projection: dim -> 2 x 4 dim (not net_2, 4 dim -> dim)
  assert geglu.m == 8 * geglu.n
  attention_only = adapters.select_layers(tiny_sd.params, adapters.ATTENTION_TARGETS)
  assert len(attention_only) == 136 and not any("/ff/" in l.path for l in attention_only)


def test_pattern_matching_nothing_is_an_error(tiny_sd):
  with pytest.raises(ValueError, match="matches no Dense kernel"):
    adapters.select_layers(tiny_sd.params, [r"^unet/.*/attn3/to_q/kernel$"])


def test_more_layers_can_be_added_by_config(tiny_sd):
  patterns = adapters.DEFAULT_TARGETS + (r"^unet/.*/ff/net_2/kernel$",)
  assert len(adapters.select_layers(tiny_sd.params, patterns)) == 152 + 16


def test_sd15_counts_from_config_without_weights():
  # The paper's figures (Sec. 4.1/5): rank-1 LoRA ~386K numbers, LiDB ~28K; computed here from the
  # config.
  unet, text = models.configs.SD15_UNET, models.configs.SD15_TEXT_ENCODER
  count = adapters.count_from_configs(unet, text)
  assert count.layers == 192 and count.layers_per_model == {"unet": 144, "text_encoder": 48}
  # SD1.5's 16 transformer blocks by width: 2 in each cross-attention down level, 3 in each up
  # level, 1 mid.
  widths = [320] * (2 + 3) + [640] * (2 + 3) + [1280] * (2 + 3 + 1)
  ctx, hidden = unet["cross_attention_dim"], text["hidden_size"]
  a, b = 100, 50
  # q, k, v, out in 2 attentions (d >= a, b)
  lidb_unet = sum(8 * (min(a, d) + min(b, d)) for d in widths)
  lidb_unet += sum(min(a, d) + min(b, 8 * d) for d in widths)  # GEGLU proj d -> 8d
  lidb_text = 48 * (min(a, hidden) + min(b, hidden))
  assert count.lidb_numbers == lidb_unet + lidb_text == 28_800
  lora_attn1 = sum(4 * (d + d) for d in widths)
  # to_k, to_v read the text (768 wide)
  lora_attn2 = sum((d + d) + 2 * (ctx + d) + (d + d) for d in widths)
  lora_ff = sum(d + 8 * d for d in widths)
  lora_text = 48 * 2 * hidden
  assert count.lora_numbers == lora_attn1 + lora_attn2 + lora_ff + lora_text == 385_344
  assert count.lidb_bytes_fp32 == 115_200
  attention_only = adapters.count_from_configs(unet, text, adapters.ATTENTION_TARGETS)
  assert (attention_only.layers, attention_only.lidb_numbers, attention_only.lora_numbers) == (
    176,
    26_400,
    273_024,
  )


def test_aux_bases_are_orthonormal_and_distinct(layers):
  aux = adapters.aux_bases(layers, TINY_LIDB)
  for layer in layers[:20]:
    a_aux, b_aux = np.asarray(aux[layer.path]["a_aux"]), np.asarray(aux[layer.path]["b_aux"])
    a, b = TINY_LIDB.dims(layer)
    assert a_aux.shape == (layer.n, a) and b_aux.shape == (b, layer.m)
    # float32 storage of a float64 QR
    np.testing.assert_allclose(a_aux.T @ a_aux, np.eye(a), atol=1e-5)
    np.testing.assert_allclose(b_aux @ b_aux.T, np.eye(b), atol=1e-5)
  first, second = (np.asarray(aux[l.path]["a_aux"]) for l in layers[:2])
  assert first.shape == second.shape and np.abs(first - second).max() > 0.1
  other_seed = adapters.aux_bases(layers[:1], LidbConfig(aux_seed=4))
  assert np.abs(np.asarray(other_seed[layers[0].path]["a_aux"]) - first).max() > 0.1


def _aux_digest(layers, config):
  aux = adapters.aux_bases(layers, config)
  h = hashlib.sha256()
  for path in sorted(aux):
    h.update(np.asarray(aux[path]["a_aux"]).tobytes() + np.asarray(aux[path]["b_aux"]).tobytes())
  return h.hexdigest()


def test_aux_bases_are_identical_in_another_process(layers):
  code = (
    "from hdb_jax.adapters import LayerSpec, LidbConfig\n"
    "from tests.test_adapters import _aux_digest\n"
    f"layers = [LayerSpec(p, n, m) for p, n, m in {[(l.path, l.n, l.m) for l in layers]!r}]\n"
    "print(_aux_digest(layers, LidbConfig(a=100, b=50, rank=1, aux_seed=3)))\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
  )
  assert out.stdout.strip().splitlines()[-1] == _aux_digest(layers, TINY_LIDB)


def _example_factors(layers, batch, seed):
  """Different LiDB + rank-2 LoRA per example, large enough to change outputs clearly."""
  aux = adapters.aux_bases(layers, TINY_LIDB)
  per_example = []
  for i in range(batch):
    k1, k2 = jax.random.split(jax.random.key(seed + i))
    lidb = adapters.init_lidb(
      layers, LidbConfig(a=100, b=50, rank=1, aux_seed=3, b_init_std=0.3), k1
    )
    lora = jax.tree.map(lambda x: x + 0.05, adapters.init_lora(layers, 2, k2))  # B = 0 -> 0.05
    per_example.append(
      adapters.concat_factors(adapters.lidb_factors(lidb, aux), adapters.lora_factors(lora))
    )
  stacked = {
    p: (jnp.stack([f[p][0] for f in per_example]), jnp.stack([f[p][1] for f in per_example]))
    for p in per_example[0]
  }
  return per_example, stacked


def _dense_reference(factors):
  """Interceptor computing x (W + A_i B_i) + bias per example with the delta W materialized."""

  def interceptor(next_fun, args, kwargs, context):
    path = "/".join(context.module.path)
    if (
      context.method_name != "__call__"
      or not isinstance(context.module, nn.Dense)
      or path not in factors
    ):
      return next_fun(*args, **kwargs)
    a, b = factors[path]
    params = context.module.variables["params"]
    weight = params["kernel"][None] + jnp.einsum("bnr,brm->bnm", a, b)
    y = jnp.einsum("b...n,bnm->b...m", args[0], weight)
    return y + params["bias"] if "bias" in params else y

  return nn.intercept_methods(interceptor)


def _three_ways(params, factors_list, stacked, model, apply_fn):
  merged = [apply_fn(adapters.merge(params, f)[model], i) for i, f in enumerate(factors_list)]
  own = adapters.model_factors(stacked, model)
  with adapters.batched_adapters(own):
    batched = apply_fn(params[model], None)
  with _dense_reference(own):
    dense = apply_fn(params[model], None)
  return (
    np.concatenate(merged),
    np.asarray(batched),
    np.asarray(dense),
    np.asarray(apply_fn(params[model], None)),
  )


def test_merge_batched_and_dense_agree_on_unet(micro_sd):
  """On the micro UNet (4 transformer blocks, 32 adapted layers): the three modes run the same Dense
  layers whatever the depth; every layer of the 16-block tiny UNet gets its gradient checked below.
  """
  factors_list, stacked = _example_factors(adapters.select_layers(micro_sd.params), batch=2, seed=0)
  rng = np.random.default_rng(1)
  latents = jnp.asarray(rng.standard_normal((2, 8, 8, 4)), jnp.float32)
  text = jnp.asarray(rng.standard_normal((2, 77, 32)), jnp.float32)
  timesteps = jnp.array([50, 900])

  def apply_fn(unet_params, index):
    if index is None:
      return models.unet_apply(micro_sd, unet_params, latents, timesteps, text)
    return models.unet_apply(
      micro_sd,
      unet_params,
      latents[index : index + 1],
      timesteps[index : index + 1],
      text[index : index + 1],
    )

  merged, batched, dense, base = _three_ways(
    micro_sd.params, factors_list, stacked, "unet", apply_fn
  )
  # fp32 sums of a few hundred terms through ~40 layers: 1e-4 absolute on outputs of magnitude ~1.
  np.testing.assert_allclose(batched, merged, atol=1e-4)
  np.testing.assert_allclose(dense, merged, atol=1e-4)
  assert np.abs(merged - base).max() > 1e-2  # the adapters really change the output
  assert np.abs(merged[0] - merged[1]).max() > 1e-2


def test_merge_batched_and_dense_agree_on_text_encoder(tiny_sd, layers):
  factors_list, stacked = _example_factors(layers, batch=3, seed=10)
  ids = jnp.asarray(models.tokenize(tiny_sd, ["a photo of sks face"] * 3))

  def apply_fn(text_params, index):
    return models.encode_text(
      tiny_sd, text_params, ids if index is None else ids[index : index + 1]
    )

  merged, batched, dense, base = _three_ways(
    tiny_sd.params, factors_list, stacked, "text_encoder", apply_fn
  )
  np.testing.assert_allclose(batched, merged, atol=2e-5)
  np.testing.assert_allclose(dense, merged, atol=2e-5)
  assert np.abs(merged - base).max() > 1e-2


def test_unknown_adapter_path_is_an_error(tiny_sd):
  ids = jnp.asarray(models.tokenize(tiny_sd, ["a face"]))
  bogus = {
    "text_model/encoder/layers/9/self_attn/q_proj": (jnp.zeros((1, 32, 1)), jnp.zeros((1, 1, 32)))
  }
  with pytest.raises(ValueError, match="matched no Dense module"):
    with adapters.batched_adapters(bogus):
      models.encode_text(tiny_sd, tiny_sd.params["text_encoder"], ids)


def test_gradient_reaches_every_lidb_leaf_from_default_init(tiny_sd, layers):
  """Default init avoids the zero-product trap: every A_train and B_train gets a gradient at step
  0."""
  config = LidbConfig(a=100, b=50, rank=1)
  aux = adapters.aux_bases(layers, config)
  lidb = jax.tree.map(lambda x: x[None], adapters.init_lidb(layers, config, jax.random.key(0)))
  rng = np.random.default_rng(2)
  # 16x16 latents: at 8x8 the mid block is 1x1, where self-attention over one token ignores to_k.
  latents = jnp.asarray(rng.standard_normal((1, 16, 16, 4)), jnp.float32)
  target = jnp.asarray(rng.standard_normal((1, 16, 16, 4)), jnp.float32)
  ids = jnp.asarray(models.tokenize(tiny_sd, ["a photo of sks face"]))

  @jax.jit
  def loss_fn(lidb_params):
    factors = adapters.lidb_factors(lidb_params, aux)
    with adapters.batched_adapters(adapters.model_factors(factors, "text_encoder")):
      text = models.encode_text(tiny_sd, tiny_sd.params["text_encoder"], ids)
    with adapters.batched_adapters(adapters.model_factors(factors, "unet")):
      pred = models.unet_apply(tiny_sd, tiny_sd.params["unet"], latents, jnp.array([500]), text)
    return jnp.mean((pred - target) ** 2)

  grads = jax.grad(loss_fn)(lidb)
  for path, leaves in grads.items():
    for name, g in leaves.items():
      assert float(jnp.abs(g).max()) > 0, f"zero gradient for {path}/{name}"


def test_merge_rejects_batched_factors_and_unknown_layers(tiny_sd, layers):
  _, stacked = _example_factors(layers[:1], batch=2, seed=0)
  with pytest.raises(ValueError, match="one identity"):
    adapters.merge(tiny_sd.params, stacked)
  with pytest.raises(KeyError, match="not in the unet parameters"):
    adapters.merge(tiny_sd.params, {"unet/nope/to_q": (jnp.zeros((2, 1)), jnp.zeros((1, 2)))})
