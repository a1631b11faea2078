"""The identity file: one person's adapter weights (~100 KB), safetensors + JSON metadata.

Tensors: `lidb`, the LiDB factors packed into one flat vector (adapters.lidb_packer: sorted layers,
a_train [a, r] then b_train [r, b] each) and, after the rank-relaxed finetune, `lora`
(adapters.lora_packer: a [n, r'] then b [r', m] per layer). Two tensors keep the header small. The
safetensors header's metadata holds `hdb_jax.identity` (JSON): format version, base model id and
config fingerprint, aux_seed/aux_scale, a, b, ranks, the layer list with kernel shapes, the token,
and a short hash of the aux bases (with the numpy version that made them). Aux bases are regenerated
from the seed, never stored; a file whose bases regenerate differently here is refused. Files are
never pickled; writes are atomic.

    ident = hdb_jax.formats.identity.load("me.safetensors")
    deltas = ident.delta_weights()   # {'unet/.../to_q/kernel': np.ndarray [n, m], ...}
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from hdb_jax.adapters.lidb import (
  LidbConfig,
  aux_bases,
  aux_basis_hash,
  check_aux_basis_hash,
  lidb_factors,
  lidb_packer,
)
from hdb_jax.adapters.lora import lora_packer
from hdb_jax.adapters.targets import LayerSpec, flatten_paths
from hdb_jax.errors import UserError
from hdb_jax.io.files import atomic_path

FORMAT_NAME = "hdb_jax.identity"
FORMAT_VERSION = 1
METADATA_KEY = "hdb_jax.identity"


class IdentityFileError(UserError):
  """An identity file is unreadable, not an identity file, or does not fit the base model."""


@dataclasses.dataclass(frozen=True)
class IdentityMeta:
  """What an identity file says about itself (stored as JSON in the safetensors header)."""

  base_model: str
  base_fingerprint: str
  layers: dict[str, tuple[int, int]]  # layer path -> kernel shape (n, m)
  lidb: LidbConfig | None
  lora_rank: int = 0
  token: str = "sks"
  format_version: int = FORMAT_VERSION
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  aux_hash: str = (
    ""  # adapters.aux_basis_hash of the frozen bases the LiDB weights were trained through
  )
  aux_numpy: str = ""  # the numpy version that regenerated them

  def layer_specs(self) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(path, n, m) for path, (n, m) in sorted(self.layers.items()))

  def to_json(self) -> str:
    data = dataclasses.asdict(self)
    data["format"] = FORMAT_NAME
    return json.dumps(data, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "IdentityMeta":
    data = json.loads(text)
    if data.pop("format", None) != FORMAT_NAME:
      raise ValueError("metadata is not an hdb_jax identity")
    if data.get("format_version", 0) > FORMAT_VERSION:
      raise ValueError(
        f"format version {data['format_version']} is newer than this hdb_jax reads "
        f"({FORMAT_VERSION}); upgrade hdb_jax"
      )
    data["layers"] = {k: tuple(v) for k, v in data["layers"].items()}
    data["lidb"] = LidbConfig(**data["lidb"]) if data.get("lidb") else None
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class Identity:
  """One identity's adapters as numpy arrays: LiDB factors and/or a plain (relaxed) LoRA."""

  meta: IdentityMeta
  lidb: dict[str, dict[str, np.ndarray]] | None = None  # path -> {'a_train', 'b_train'}
  lora: dict[str, dict[str, np.ndarray]] | None = None  # path -> {'a', 'b'}

  @property
  def token(self) -> str:
    """The identifier ([V]) that stands for this person in prompts."""
    return self.meta.token

  def factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """path -> (A [n, R], B [R, m]): LiDB (aux bases folded in) and LoRA concatenated, R = r +
    r'."""
    parts: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    if self.lidb:
      aux = aux_bases(self.meta.layer_specs(), self.meta.lidb)
      parts.append(
        {
          p: (np.asarray(a, np.float32), np.asarray(b, np.float32))
          for p, (a, b) in lidb_factors(self.lidb, aux).items()
        }
      )
    if self.lora:
      parts.append(
        {
          p: (np.asarray(v["a"], np.float32), np.asarray(v["b"], np.float32))
          for p, v in self.lora.items()
        }
      )
    if not parts:
      return {}
    return {
      p: (
        np.concatenate([f[p][0] for f in parts], axis=1),
        np.concatenate([f[p][1] for f in parts], axis=0),
      )
      for p in sorted(parts[0])
    }

  def delta_weights(self) -> dict[str, np.ndarray]:
    """'<model>/<module path>/kernel' -> delta W [n, m] (float32), the sum of every adapter."""
    return {f"{path}/kernel": a @ b for path, (a, b) in self.factors().items()}

  def check_compatible(self, params: Mapping[str, Any], fingerprint: str | None = None) -> None:
    """Raises IdentityFileError naming the first layer missing from, or misshaped in, `params`.

    params: {'unet': tree, 'text_encoder': tree} (arrays or ShapeDtypeStructs).
    """
    kernels = flatten_paths(params)
    for path, (n, m) in sorted(self.meta.layers.items()):
      leaf = kernels.get(f"{path}/kernel")
      if leaf is None:
        raise IdentityFileError(
          f"identity layer {path!r} does not exist in the base model "
          f"(identity made for {self.meta.base_model!r})"
        )
      if tuple(leaf.shape) != (n, m):
        raise IdentityFileError(
          f"identity layer {path!r} has kernel shape {(n, m)}, the base model's is "
          f"{tuple(leaf.shape)} (identity made for {self.meta.base_model!r})"
        )
    if fingerprint is not None and fingerprint != self.meta.base_fingerprint:
      raise IdentityFileError(
        f"identity made for a base model with config fingerprint "
        f"{self.meta.base_fingerprint} ({self.meta.base_model!r}), this one is {fingerprint}"
      )


def _validate(identity: Identity) -> None:
  layers = set(identity.meta.layers)
  for name, part in (("lidb", identity.lidb), ("lora", identity.lora)):
    if part is not None and set(part) != layers:
      raise IdentityFileError(
        f"{name} adapters cover {len(part)} layers, metadata lists {len(layers)}"
      )
  if identity.lidb is not None and identity.meta.lidb is None:
    raise IdentityFileError("LiDB weights without a LiDB config in the metadata")


def _packers(meta: IdentityMeta) -> dict[str, Any]:
  """The packer of each adapter kind: one flat vector per kind, in layer order."""
  layers = meta.layer_specs()
  packers = {}
  if meta.lidb is not None:
    packers["lidb"] = lidb_packer(layers, meta.lidb)
  if meta.lora_rank:
    packers["lora"] = lora_packer(layers, meta.lora_rank)
  return packers


def save(path: str, identity: Identity) -> None:
  """Writes the identity file atomically (temp file + rename)."""
  _validate(identity)
  packers = _packers(identity.meta)
  tensors = {
    kind: np.ascontiguousarray(np.asarray(packers[kind].pack(part), np.float32))
    for kind, part in (("lidb", identity.lidb), ("lora", identity.lora))
    if part
  }
  for kind, vector in tensors.items():
    if vector.shape != (packers[kind].size,):
      raise IdentityFileError(
        f"{kind} factors hold {vector.size} numbers, the layer list needs {packers[kind].size}"
      )
  with atomic_path(path) as tmp:
    save_file(tensors, tmp, metadata={METADATA_KEY: identity.meta.to_json()})


def _read_metadata(path: str) -> str:
  """The identity JSON from a safetensors header, without loading tensors."""
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel

  with safe_open(path, framework="numpy") as f:
    metadata = f.metadata() or {}
  if METADATA_KEY not in metadata:
    raise IdentityFileError(
      f"{path}: a safetensors file, but not an hdb_jax identity (no '{METADATA_KEY}' "
      "metadata); for a PyTorch LoRA use hdb_jax's import tools instead"
    )
  return metadata[METADATA_KEY]


def load(path: str, base: Any = None) -> Identity:
  """Reads an identity file; with `base` (a StableDiffusion or a params dict) checks it fits that
  model."""
  if not os.path.isfile(path):
    raise IdentityFileError(f"{path}: no such identity file")
  try:
    meta = IdentityMeta.from_json(_read_metadata(path))
    tensors = load_file(path)
  except IdentityFileError:
    raise
  except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
    raise IdentityFileError(
      f"{path}: not a readable identity file ({type(e).__name__}: {e})"
    ) from e
  packers = _packers(meta)
  unknown = sorted(set(tensors) - set(packers))
  if unknown:
    raise IdentityFileError(f"{path}: unexpected tensor {unknown[0]!r}")
  try:
    parts = {
      kind: {
        layer: {k: np.asarray(v) for k, v in leaves.items()}
        for layer, leaves in packers[kind].unpack(tensors[kind]).items()
      }
      for kind in tensors
    }
  except ValueError as e:
    raise IdentityFileError(f"{path}: {e}") from e
  identity = Identity(meta=meta, lidb=parts.get("lidb"), lora=parts.get("lora"))
  _validate(identity)
  if meta.lidb is not None:
    check_aux_basis_hash(meta.aux_hash, meta.layer_specs(), meta.lidb, path, meta.aux_numpy)
  if base is not None:
    params = base.params if hasattr(base, "params") else base
    fingerprint = base.fingerprint() if hasattr(base, "fingerprint") else None
    identity.check_compatible(params, fingerprint)
  return identity


def from_arrays(
  layers: Sequence[LayerSpec],
  base_model: str,
  base_fingerprint: str,
  lidb_config: LidbConfig | None = None,
  lidb: Mapping[str, Mapping[str, Any]] | None = None,
  lora: Mapping[str, Mapping[str, Any]] | None = None,
  token: str = "sks",
  extra: dict[str, Any] | None = None,
) -> Identity:
  """Builds an Identity from (jax or numpy) adapter pytrees of ONE identity (no batch axis)."""

  def to_numpy(part):
    return (
      None
      if part is None
      else {p: {k: np.asarray(v, np.float32) for k, v in d.items()} for p, d in part.items()}
    )

  lora_np = to_numpy(lora)
  lora_rank = int(next(iter(lora_np.values()))["a"].shape[1]) if lora_np else 0
  lidb_config = lidb_config if lidb is not None else None
  meta = IdentityMeta(
    base_model=base_model,
    base_fingerprint=base_fingerprint,
    layers={l.path: (l.n, l.m) for l in layers},
    lidb=lidb_config,
    lora_rank=lora_rank,
    token=token,
    extra=dict(extra or {}),
    aux_hash=aux_basis_hash(layers, lidb_config) if lidb_config else "",
    aux_numpy=np.__version__ if lidb_config else "",
  )
  identity = Identity(meta=meta, lidb=to_numpy(lidb), lora=lora_np)
  _validate(identity)
  return identity
