"""Model loading: tiny models through the real loader, PyTorch->Flax conversion, actionable
errors."""

import json
import os
import re
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from hdb_jax import models
from hdb_jax.errors import UserError
from hdb_jax.models.tokenizer import TINY_WORDS, write_tiny_tokenizer
from hdb_jax.models.torch_models import load_pytorch_text_encoder, load_pytorch_unet


def test_tiny_model_keeps_sd15_topology(tiny_sd):
  config = tiny_sd.unet.config
  assert len(config.block_out_channels) == 4
  assert list(config.down_block_types).count("CrossAttnDownBlock2D") == 3
  assert config.layers_per_block == 2
  # 16 transformer blocks: 3 down levels x 2 + mid 1 + 3 up levels x 3.
  blocks = {
    k.split("/transformer_blocks_0")[0]
    for k in _flat_keys(tiny_sd.params["unet"])
    if "/transformer_blocks_0/" in k
  }
  assert len(blocks) == 16
  assert all(c % 32 == 0 for c in config.block_out_channels)  # Flax GroupNorm uses 32 groups
  assert tiny_sd.resolution == 64


def _flat_keys(tree):
  from flax import traverse_util  # pylint: disable=import-outside-toplevel

  return ["/".join(k) for k in traverse_util.flatten_dict(tree)]


def test_pytorch_and_flax_tiny_models_agree(tiny_torch_dir, tiny_torch_sd):
  """The PyTorch safetensors -> Flax conversion path is real: both frameworks give the same outputs.

  Tolerance: fp32 on both sides; the deepest level is 1x1 spatially, where GroupNorm normalizes 2
  numbers per group and amplifies rounding, so we allow 1e-4 absolute on outputs of magnitude ~1
  (measured: 1.5e-5). Without `pytorch_parity` the difference is ~1e-2, so this test has teeth.
  """
  rng = np.random.default_rng(0)
  ids = models.tokenize(tiny_torch_sd, ["a photo of sks face", "a painting of a man"])
  text_flax = np.asarray(
    models.encode_text(tiny_torch_sd, tiny_torch_sd.params["text_encoder"], jnp.asarray(ids))
  )
  with torch.no_grad():
    text_torch = load_pytorch_text_encoder(tiny_torch_dir)(torch.from_numpy(ids).long())[0].numpy()
  np.testing.assert_allclose(text_flax, text_torch, atol=1e-5)

  latents = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
  timesteps = np.array([10, 700])
  unet_flax = jax.jit(
    lambda p, x, e: models.unet_apply(tiny_torch_sd, p, x, jnp.asarray(timesteps), e)
  )(tiny_torch_sd.params["unet"], latents, text_flax)
  with torch.no_grad():
    unet_torch = (
      load_pytorch_unet(tiny_torch_dir)(
        torch.from_numpy(latents).permute(0, 3, 1, 2),
        torch.from_numpy(timesteps),
        torch.from_numpy(text_torch),
      )
      .sample.permute(0, 2, 3, 1)
      .numpy()
    )
  assert np.abs(unet_torch).max() > 0.1  # a real signal to compare
  np.testing.assert_allclose(np.asarray(unet_flax), unet_torch, atol=1e-4)


def test_vae_roundtrip_shapes(tiny_sd):
  images = jnp.zeros((2, 64, 64, 3))
  latents = models.vae_encode(tiny_sd, tiny_sd.params["vae"], images, jax.random.key(0))
  assert latents.shape == (2, 8, 8, 4)
  decoded = models.vae_decode(tiny_sd, tiny_sd.params["vae"], latents)
  assert decoded.shape == (2, 64, 64, 3) and bool(jnp.isfinite(decoded).all())


@pytest.mark.parametrize(
  "words", [TINY_WORDS, ("pencil", "art", "wearing", "ear", "pea", "a", "at")]
)
def test_every_vocabulary_word_is_one_token(tmp_path, words):
  """Merges written word by word interfere ('ar' from 'art' broke 'wearing' into 4 pieces); learned
  BPE merges keep every word whole, and other text still tokenizes, by characters."""
  tokenizer = write_tiny_tokenizer(str(tmp_path), words)
  assert [w for w in words if tokenizer.tokenize(w) != [w + "</w>"]] == []
  assert "".join(tokenizer.tokenize("zebra")).replace("</w>", "") == "zebra"


def test_tokenizer_is_saved_in_clip_format(tiny_dir, tiny_sd):
  assert {"vocab.json", "merges.txt"} <= set(os.listdir(os.path.join(tiny_dir, "tokenizer")))
  ids = models.tokenize(tiny_sd, ["a photo of sks face"])
  assert ids.shape == (1, 77)
  tokens = tiny_sd.tokenizer.convert_ids_to_tokens(ids[0, :7].tolist())
  assert tokens == [
    "<|startoftext|>",
    "a</w>",
    "photo</w>",
    "of</w>",
    "sks</w>",
    "face</w>",
    "<|endoftext|>",
  ]
  with pytest.raises(ValueError, match="empty prompt"):
    models.tokenize(tiny_sd, ["  "])


@pytest.mark.parametrize(
  "vocabulary, refused",
  [
    ("tiny", "zqxj"),
    ("tiny", ""),
    ("tiny", "two words"),
    ("without sks", "sks"),
    ("without sks", "zqxj"),
    ("without sks", "two words"),
  ],
)
def test_refused_token_suggests_single_tokens_of_this_tokenizer(tmp_path, vocabulary, refused):
  """The refusal names up to 3 words that this tokenizer keeps as one token, never the refused one;
  a tokenizer without 'sks' (none of the classic rare identifiers) gets words from its own
  vocabulary."""
  words = TINY_WORDS if vocabulary == "tiny" else tuple(w for w in TINY_WORDS if w != "sks")
  # check_token needs only this
  sd = types.SimpleNamespace(tokenizer=write_tiny_tokenizer(str(tmp_path), words))
  with pytest.raises(UserError, match="single token") as error:
    models.check_token(sd, refused)
  suggested = re.findall(r"'([^']*)'", str(error.value).partition("e.g. ")[2])
  assert 1 <= len(suggested) <= 3 and refused not in suggested
  assert ("sks" in suggested) == (vocabulary == "tiny")
  for word in suggested:
    models.check_token(sd, word)


def test_missing_directory_is_a_clear_error(tmp_path):
  with pytest.raises(models.ModelLoadError, match="model directory not found"):
    models.load_stable_diffusion(str(tmp_path / "nope"))


def _break_unet_config(unet_dir):
  config = json.loads((unet_dir / "config.json").read_text())
  config["cross_attention_dim"] = 64
  (unet_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
  "source, damage, message",
  [
    ("flax", lambda d: shutil.rmtree(d / "vae"), "no 'vae/' subfolder"),
    (
      "flax",
      lambda d: shutil.copy(d / "vae" / "config.json", d / "unet" / "config.json"),
      "describes a (Flax)?AutoencoderKL",
    ),
    (
      "flax",
      lambda d: os.rename(
        d / "unet" / "diffusion_flax_model.msgpack", d / "unet" / "diffusion_pytorch_model.bin"
      ),
      "only pickled weights",
    ),
    ("torch", lambda d: _break_unet_config(d / "unet"), "has shape"),
  ],
  ids=["missing-subfolder", "not-a-unet", "pickle-only", "misshaped-weights"],
)
def test_broken_model_directory_is_a_clear_error(request, tmp_path, source, damage, message):
  broken = tmp_path / "broken"
  shutil.copytree(
    request.getfixturevalue("tiny_dir" if source == "flax" else "tiny_torch_dir"), broken
  )
  damage(broken)
  with pytest.raises(models.ModelLoadError, match=message):
    models.load_stable_diffusion(str(broken))


def test_hub_id_while_offline_is_a_clear_error():
  code = (
    "from hdb_jax import models\n"
    "try:\n  models.load_stable_diffusion('no-such-org/no-such-model')\n"
    "except models.ModelLoadError as e:\n  print('ERR', e)\n"
  )
  env = dict(os.environ, HF_HUB_OFFLINE="1")
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
  )
  assert "ERR could not fetch 'no-such-org/no-such-model'" in out.stdout, out.stderr[-2000:]
  assert "offline" in out.stdout


def test_fingerprint_ignores_bookkeeping_but_not_architecture():
  unet = dict(models.configs.TINY_UNET)
  text = dict(models.configs.TINY_TEXT_ENCODER, vocab_size=100)
  base = models.config_fingerprint(unet, text)
  assert models.config_fingerprint({**unet, "_diffusers_version": "9"}, text) == base
  assert models.config_fingerprint({**unet, "cross_attention_dim": 64}, text) != base


def test_centring_the_latents_keeps_the_vae_and_centres_its_channels(tiny_sd):
  """models.center_vae_latents: the folded VAE encodes these images to per-channel mean 0, std 1
  (the statistics it was given are theirs), its log variances shift by -2 log std, and it decodes
  the centred latents to the images the original decodes from its own (float32 rounding only)."""
  params = tiny_sd.params["vae"]
  images = jax.random.uniform(jax.random.key(1), (4, 64, 64, 3), minval=-1.0, maxval=1.0)
  mean, logvar = (np.asarray(x) for x in models.vae_posterior(tiny_sd, params, images))
  channel_mean, channel_std = mean.mean(axis=(0, 1, 2)), mean.std(axis=(0, 1, 2))
  assert np.abs(channel_mean).max() > 0.01  # something to centre
  centred = models.center_vae_latents(params, channel_mean, channel_std)
  new_mean, new_logvar = (np.asarray(x) for x in models.vae_posterior(tiny_sd, centred, images))
  np.testing.assert_allclose(new_mean.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(new_mean.std(axis=(0, 1, 2)), 1.0, rtol=1e-4)
  np.testing.assert_allclose(new_logvar, logvar - 2 * np.log(channel_std), atol=1e-3)
  before = models.vae_decode(tiny_sd, params, models.vae_encode(tiny_sd, params, images))
  after = models.vae_decode(tiny_sd, centred, models.vae_encode(tiny_sd, centred, images))
  np.testing.assert_allclose(np.asarray(after), np.asarray(before), atol=1e-4)
  with pytest.raises(ValueError, match="std > 0"):
    models.center_vae_latents(params, channel_mean, np.zeros_like(channel_std))
