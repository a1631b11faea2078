"""Lightweight DreamBooth (LiDB): LoRA factors decomposed through frozen random orthogonal bases.

For a layer W in R^{n x m}: A = A_aux A_train, B = B_train B_aux, delta W = A B, with
A_aux in R^{n x a} (orthonormal columns), A_train in R^{a x r}, B_train in R^{r x b},
B_aux in R^{b x m} (orthonormal rows), a = min(a, n), b = min(b, m). Aux bases are regenerated
from (aux_seed, layer path) with numpy in float64, so every process and every run gets the same
bits; they are never stored.
"""

import dataclasses
import functools
import hashlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax.adapters.packing import Packer
from hdb_jax.adapters.targets import LayerSpec
from hdb_jax.errors import UserError

LidbParams = dict[str, dict[str, jax.Array]]  # path -> {'a_train': [a, r], 'b_train': [r, b]}
AuxBases = dict[str, dict[str, jax.Array]]  # path -> {'a_aux': [n, a], 'b_aux': [b, m]}


@dataclasses.dataclass(frozen=True)
class LidbConfig:
  """LiDB sizes and initialisation. Paper defaults: a=100, b=50, r=1."""

  a: int = 100
  b: int = 50
  rank: int = 1
  aux_seed: int = 0
  aux_scale: float = 1.0
  # Both trainable factors start non-zero (the zero-product trap: if either is all zero, the other
  # gets no gradient). B_train starts small so the initial delta W is a small perturbation.
  a_init_std: float = 1.0
  b_init_std: float = 1e-3

  def dims(self, layer: LayerSpec) -> tuple[int, int]:
    """The (a, b) actually used for a layer: min(a, n), min(b, m)."""
    return min(self.a, layer.n), min(self.b, layer.m)


def _layer_rng(aux_seed: int, path: str) -> np.random.Generator:
  digest = hashlib.sha256(f"{aux_seed}:{path}".encode()).digest()
  return np.random.default_rng(np.frombuffer(digest[:16], dtype=np.uint32))


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
  """rows x cols with orthonormal columns (cols <= rows), from the QR of a Gaussian matrix."""
  q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
  return q * np.sign(np.diag(r))[None, :]  # fix the sign ambiguity of QR: a unique, uniform basis


@functools.lru_cache(maxsize=1024)
def _layer_bases(
  aux_seed: int, aux_scale: float, path: str, n: int, m: int, a: int, b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(A_aux [n, a], B_aux [b, m]) of one layer in float32, and 8 of their entries in float64
  (A_aux[:4, 0], B_aux[0, :4], for aux_basis_hash); cached, since regenerating SD1.5's bases takes
  seconds."""
  rng = _layer_rng(aux_seed, path)
  a_aux = _orthonormal_columns(rng, n, a) * aux_scale
  b_aux = _orthonormal_columns(rng, m, b).T * aux_scale
  probe = np.concatenate([a_aux[:4, 0], b_aux[0, :4]])
  a_aux, b_aux = a_aux.astype(np.float32), b_aux.astype(np.float32)
  for array in (a_aux, b_aux, probe):
    array.flags.writeable = False
  return a_aux, b_aux, probe


def _numpy_bases(layer: LayerSpec, config: LidbConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  return _layer_bases(
    config.aux_seed, float(config.aux_scale), layer.path, layer.n, layer.m, *config.dims(layer)
  )


def aux_bases(layers: Sequence[LayerSpec], config: LidbConfig) -> AuxBases:
  """The frozen bases of every layer, deterministic in (aux_seed, path)."""
  out = {}
  for layer in layers:
    a_aux, b_aux, _ = _numpy_bases(layer, config)
    out[layer.path] = {"a_aux": jnp.asarray(a_aux), "b_aux": jnp.asarray(b_aux)}
  return out


class AuxBasisMismatchError(UserError):
  """A file's LiDB weights were trained through other frozen bases than this installation
  regenerates."""


def aux_basis_hash(layers: Sequence[LayerSpec], config: LidbConfig) -> str:
  """A short hash (16 hex digits) of the frozen bases regenerated for `layers`.

  Files store only aux_seed, so they also store this: bases regenerated differently (numpy's
  Generator streams are not frozen across versions) are refused instead of silently applying the
  weights through other bases. It hashes, per layer, the first 4 entries of A_aux's first column and
  of B_aux's first row (float64) rounded to 4 decimals: any change of the random stream changes them
  all, while float64 QR rounding differences between LAPACKs (~1e-16) would cross a rounding
  boundary about once in 1e9 files.
  """
  digest = hashlib.sha256(f"{config.aux_seed}:{config.aux_scale}".encode())
  for layer in sorted(layers, key=lambda l: l.path):
    probe = _numpy_bases(layer, config)[2]
    digest.update(
      f"{layer.path}:{layer.n}x{layer.m}:".encode() + " ".join(f"{v:.4f}" for v in probe).encode()
    )
  return digest.hexdigest()[:16]


def check_aux_basis_hash(
  stored: str | None,
  layers: Sequence[LayerSpec],
  config: LidbConfig,
  what: str,
  made_with_numpy: str | None = None,
) -> None:
  """Raises AuxBasisMismatchError if `stored` (a file's aux_basis_hash) differs from the bases
  regenerated here. Files from before hashes were stored (`stored` empty) are accepted unchecked."""
  if not stored:
    return
  here = aux_basis_hash(layers, config)
  if stored != here:
    origin = f" (it was made with numpy {made_with_numpy})" if made_with_numpy else ""
    raise AuxBasisMismatchError(
      f"{what}: its LiDB weights were trained through frozen random bases with hash {stored}, but "
      "the bases "
      f"regenerated here from aux_seed={config.aux_seed} hash to {here}. The bases are never "
      "stored, only "
      f"regenerated with numpy (version {np.__version__} here{origin}), and numpy's random streams "
      "can change "
      "between versions: applying these weights through other bases would give garbage. Install "
      "the numpy "
      "version the file was made with."
    )


def init_lidb(layers: Sequence[LayerSpec], config: LidbConfig, rng: jax.Array) -> LidbParams:
  """Trainable LiDB factors for the layers, both non-zero (see LidbConfig)."""
  params = {}
  for layer, key in zip(layers, jax.random.split(rng, len(layers))):
    a, b = config.dims(layer)
    key_a, key_b = jax.random.split(key)
    params[layer.path] = {
      "a_train": config.a_init_std / np.sqrt(a) * jax.random.normal(key_a, (a, config.rank)),
      "b_train": config.b_init_std * jax.random.normal(key_b, (config.rank, b)),
    }
  return params


def lidb_factors(lidb_params: LidbParams, aux: AuxBases) -> dict[str, tuple[jax.Array, jax.Array]]:
  """LiDB params -> LoRA factors (A [..., n, r], B [..., r, m]) per layer.

  Leading batch axes on the trainable factors carry through (one factor pair per example).
  """
  factors = {}
  for path, p in lidb_params.items():
    a_aux, b_aux = aux[path]["a_aux"], aux[path]["b_aux"]
    factors[path] = (
      jnp.einsum("na,...ar->...nr", a_aux, p["a_train"]),
      jnp.einsum("...rb,bm->...rm", p["b_train"], b_aux),
    )
  return factors


def relaxed_lidb_config(config: LidbConfig, extra_rank: int) -> LidbConfig:
  """The LiDB of the compact relaxation: `extra_rank` new ranks through the same frozen bases.

  B_train starts at zero, so the relaxed identity starts exactly at the prediction (A_train, still
  random, gives B_train its gradient from the first step).
  """
  if extra_rank < 1:
    raise ValueError(f"the relaxation needs at least 1 extra rank, not {extra_rank}")
  return dataclasses.replace(config, rank=extra_rank, b_init_std=0.0)


def concat_lidb(*parts: LidbParams) -> LidbParams:
  """LiDB params of ranks r1, r2, ... on the same layers and bases -> one of rank r1 + r2 + ...

  Exact: through shared bases, [A_1 | A_2] [B_1 ; B_2] = A_1 B_1 + A_2 B_2, so the concatenation's
  delta W is the sum of the parts'. Leading batch axes carry through.
  """
  paths = set(parts[0])
  if any(set(p) != paths for p in parts[1:]):
    raise ValueError("LiDB params to concatenate must cover the same layers")
  return {
    path: {
      "a_train": jnp.concatenate([p[path]["a_train"] for p in parts], axis=-1),
      "b_train": jnp.concatenate([p[path]["b_train"] for p in parts], axis=-2),
    }
    for path in sorted(paths)
  }


def lidb_size(layers: Sequence[LayerSpec], config: LidbConfig) -> int:
  """Number of trainable LiDB numbers for these layers."""
  return sum(config.rank * sum(config.dims(layer)) for layer in layers)


def lidb_packer(layers: Sequence[LayerSpec], config: LidbConfig) -> Packer:
  """Packs LiDB params into one vector [..., D] (sorted layers; a_train then b_train per layer).

  This vector is what Phase 0 stores per identity and the hypernetwork predicts;
  D = lidb_size(layers, config).
  """
  return Packer.from_template(jax.eval_shape(lambda: init_lidb(layers, config, jax.random.key(0))))
