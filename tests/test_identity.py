"""The identity file: exact round trip, delta weights, clear errors for bad or foreign files."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from hdb_jax import adapters, identity
from hdb_jax.adapters import LidbConfig


@pytest.fixture(scope="module")
def layers(tiny_sd):
  return adapters.select_layers(tiny_sd.params)


@pytest.fixture(scope="module")
def ident(tiny_sd, layers):
  config = LidbConfig(aux_seed=7, b_init_std=0.1)
  lidb = adapters.init_lidb(layers, config, jax.random.PRNGKey(0))
  lora = jax.tree.map(lambda x: x + 0.01, adapters.init_lora(layers, 4, jax.random.PRNGKey(1)))
  return identity.from_arrays(layers, base_model="tiny", base_fingerprint=tiny_sd.fingerprint(),
                              lidb_config=config, lidb=lidb, lora=lora, token="sks")


def test_round_trip_is_exact(ident, tmp_path, tiny_sd):
  path = str(tmp_path / "me.safetensors")
  identity.save(path, ident)
  loaded = identity.load(path, base=tiny_sd)
  assert loaded.meta == ident.meta
  for part in ("lidb", "lora"):
    original, back = getattr(ident, part), getattr(loaded, part)
    assert set(original) == set(back)
    for layer in original:
      for name in original[layer]:
        np.testing.assert_array_equal(original[layer][name], back[layer][name])
  assert not [p for p in tmp_path.iterdir() if p.name != "me.safetensors"]  # no temp files left


def test_size_is_lidb_plus_lora(ident, layers, tmp_path):
  path = tmp_path / "me.safetensors"
  identity.save(str(path), ident)
  numbers = adapters.lidb_size(layers, ident.meta.lidb) + adapters.lora_size(layers, 4)
  header = path.stat().st_size - 4 * numbers
  assert 0 < header < 20_000  # the JSON header (layer list, metadata); tensors are 4 bytes each


def test_delta_weights_compose_lidb_and_lora(ident, layers):
  deltas = ident.delta_weights()
  assert set(deltas) == {f"{l.path}/kernel" for l in layers}
  aux = adapters.aux_bases(layers, ident.meta.lidb)
  lidb_delta = adapters.delta_weights(adapters.lidb_factors(ident.lidb, aux))
  for layer in layers[:10]:
    lora_delta = ident.lora[layer.path]["a"] @ ident.lora[layer.path]["b"]
    expected = np.asarray(lidb_delta[layer.path]) + lora_delta
    assert deltas[f"{layer.path}/kernel"].shape == (layer.n, layer.m)
    np.testing.assert_allclose(deltas[f"{layer.path}/kernel"], expected, rtol=1e-5, atol=1e-7)


def test_truncated_file_is_a_clear_error(ident, tmp_path):
  path = tmp_path / "me.safetensors"
  identity.save(str(path), ident)
  data = path.read_bytes()
  for cut in (len(data) // 2, 100, 4):
    path.write_bytes(data[:cut])
    with pytest.raises(identity.IdentityFileError, match="not a readable identity file"):
      identity.load(str(path))


def test_foreign_and_garbage_files_are_clear_errors(tmp_path):
  foreign = tmp_path / "lora.safetensors"
  save_file({"unet.x.lora_A.weight": np.zeros((1, 4), np.float32)}, str(foreign))
  with pytest.raises(identity.IdentityFileError, match="not an hdb_jax identity"):
    identity.load(str(foreign))
  garbage = tmp_path / "garbage.safetensors"
  garbage.write_bytes(b"\x00" * 16 + b"hello world")
  with pytest.raises(identity.IdentityFileError, match="not a readable identity file"):
    identity.load(str(garbage))
  with pytest.raises(identity.IdentityFileError, match="no such identity file"):
    identity.load(str(tmp_path / "missing.safetensors"))


def test_file_for_another_base_model_names_the_layer(ident, tmp_path, tiny_sd):
  path = str(tmp_path / "me.safetensors")
  layer = sorted(ident.meta.layers)[0]
  n, m = ident.meta.layers[layer]
  moved = {("unet/elsewhere" if p == layer else p): v for p, v in ident.meta.layers.items()}
  other = identity.Identity(meta=ident.meta.__class__(**{**ident.meta.__dict__, "layers": moved}))
  with pytest.raises(identity.IdentityFileError, match="unet/elsewhere.*does not exist"):
    other.check_compatible(tiny_sd.params)
  reshaped = {p: ((n + 1, m) if p == layer else v) for p, v in ident.meta.layers.items()}
  other = identity.Identity(meta=ident.meta.__class__(**{**ident.meta.__dict__, "layers": reshaped}))
  with pytest.raises(identity.IdentityFileError, match=f"{layer}.*kernel shape"):
    other.check_compatible(tiny_sd.params)
  identity.save(path, ident)
  with pytest.raises(identity.IdentityFileError, match="fingerprint"):
    identity.load(path).check_compatible(tiny_sd.params, fingerprint="0" * 16)


def test_newer_format_version_is_refused(ident):
  data = json.loads(ident.meta.to_json())
  data["format_version"] = 99
  with pytest.raises(ValueError, match="newer than this hdb_jax reads"):
    identity.IdentityMeta.from_json(json.dumps(data))
