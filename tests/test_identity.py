"""The identity file: exact round trip, delta weights, clear errors for bad or foreign files."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from hdb_jax import adapters
from hdb_jax.adapters import LidbConfig
from hdb_jax.formats import identity


@pytest.fixture(scope="module")
def layers(tiny_sd):
  return adapters.select_layers(tiny_sd.params)


@pytest.fixture(scope="module")
def ident(tiny_sd, layers):
  config = LidbConfig(aux_seed=7, b_init_std=0.1)
  lidb = adapters.init_lidb(layers, config, jax.random.key(0))
  lora = jax.tree.map(lambda x: x + 0.01, adapters.init_lora(layers, 4, jax.random.key(1)))
  return identity.from_arrays(
    layers,
    base_model="tiny",
    base_fingerprint=tiny_sd.fingerprint(),
    lidb_config=config,
    lidb=lidb,
    lora=lora,
    token="sks",
  )


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
  other = identity.Identity(
    meta=ident.meta.__class__(**{**ident.meta.__dict__, "layers": reshaped})
  )
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


@pytest.fixture
def drifted_numpy_stream(monkeypatch):
  """Stands in for a numpy whose Generator streams changed: every layer's bases regenerate
  differently."""
  from hdb_jax.adapters import lidb

  original = lidb._layer_rng  # pylint: disable=protected-access
  monkeypatch.setattr(lidb, "_layer_rng", lambda seed, path: original(seed + 1000, path))
  lidb._layer_bases.cache_clear()  # pylint: disable=protected-access
  yield
  lidb._layer_bases.cache_clear()  # pylint: disable=protected-access


def test_aux_basis_hash_round_trips_and_drift_is_refused(ident, layers, tmp_path, request):
  path = str(tmp_path / "me.safetensors")
  identity.save(path, ident)
  stored = identity.load(path).meta
  assert (
    stored.aux_hash == adapters.aux_basis_hash(layers, ident.meta.lidb)
    and len(stored.aux_hash) == 16
  )
  assert stored.aux_numpy == np.__version__
  # the seed is hashed too
  assert adapters.aux_basis_hash(layers, LidbConfig(aux_seed=8)) != stored.aux_hash
  request.getfixturevalue("drifted_numpy_stream")
  assert adapters.aux_basis_hash(layers, ident.meta.lidb) != stored.aux_hash
  with pytest.raises(adapters.AuxBasisMismatchError, match=f"hash {stored.aux_hash}.*numpy"):
    identity.load(path)


def test_files_from_before_the_hash_load_unchecked(ident, tmp_path):
  data = json.loads(ident.meta.to_json())
  del data["aux_hash"], data["aux_numpy"]
  old = identity.IdentityMeta.from_json(json.dumps(data))
  assert old.aux_hash == ""
  path = str(tmp_path / "old.safetensors")
  identity.save(path, identity.Identity(meta=old, lidb=ident.lidb, lora=ident.lora))
  assert identity.load(path).meta.aux_hash == ""


def test_weights_dataset_refuses_drifted_bases(layers, tmp_path, request):
  from hdb_jax.formats import weights_dataset

  config = LidbConfig(aux_seed=7)
  header = dict(base_model="tiny", base_fingerprint="f" * 16, layers=layers, lidb_config=config)
  dataset = weights_dataset.create_or_open(str(tmp_path), **header, settings={})
  vector = np.zeros((1, adapters.lidb_size(layers, config)), np.float32)
  dataset.append_chunk(0, ["id0"], ["src0"], vector, [0.5])
  assert weights_dataset.open_dataset(str(tmp_path)).index["aux_hash"] == adapters.aux_basis_hash(
    layers, config
  )
  request.getfixturevalue("drifted_numpy_stream")
  with pytest.raises(adapters.AuxBasisMismatchError, match="weights dataset"):
    weights_dataset.open_dataset(str(tmp_path))
  with pytest.raises(adapters.AuxBasisMismatchError):
    weights_dataset.create_or_open(str(tmp_path), **header, settings={})
