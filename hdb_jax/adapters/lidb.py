"""Lightweight DreamBooth (LiDB): LoRA factors decomposed through frozen random orthogonal bases.

For a layer W in R^{n x m}: A = A_aux A_train, B = B_train B_aux, delta W = A B, with
A_aux in R^{n x a} (orthonormal columns), A_train in R^{a x r}, B_train in R^{r x b},
B_aux in R^{b x m} (orthonormal rows), a = min(a, n), b = min(b, m). Aux bases are regenerated
from (aux_seed, layer path) with numpy in float64, so every process and every run gets the same
bits; they are never stored.
"""

import dataclasses
import hashlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax.adapters.packing import Packer
from hdb_jax.adapters.targets import LayerSpec

LidbParams = dict[str, dict[str, jax.Array]]  # path -> {'a_train': [a, r], 'b_train': [r, b]}
AuxBases = dict[str, dict[str, jax.Array]]    # path -> {'a_aux': [n, a], 'b_aux': [b, m]}


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


def aux_bases(layers: Sequence[LayerSpec], config: LidbConfig) -> AuxBases:
  """The frozen bases of every layer, deterministic in (aux_seed, path)."""
  out = {}
  for layer in layers:
    a, b = config.dims(layer)
    rng = _layer_rng(config.aux_seed, layer.path)
    a_aux = _orthonormal_columns(rng, layer.n, a) * config.aux_scale
    b_aux = _orthonormal_columns(rng, layer.m, b).T * config.aux_scale
    out[layer.path] = {"a_aux": jnp.asarray(a_aux, jnp.float32), "b_aux": jnp.asarray(b_aux, jnp.float32)}
  return out


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
    factors[path] = (jnp.einsum("na,...ar->...nr", a_aux, p["a_train"]),
                     jnp.einsum("...rb,bm->...rm", p["b_train"], b_aux))
  return factors


def lidb_size(layers: Sequence[LayerSpec], config: LidbConfig) -> int:
  """Number of trainable LiDB numbers for these layers."""
  return sum(config.rank * sum(config.dims(layer)) for layer in layers)



def lidb_packer(layers: Sequence[LayerSpec], config: LidbConfig) -> Packer:
  """Packs LiDB params into one vector [..., D] (sorted layers; a_train then b_train per layer).

  This vector is what Phase 0 stores per identity and the hypernetwork predicts;
  D = lidb_size(layers, config).
  """
  return Packer.from_template(jax.eval_shape(lambda: init_lidb(layers, config, jax.random.PRNGKey(0))))
