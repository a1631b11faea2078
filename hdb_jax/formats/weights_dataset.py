"""Phase 0's output: one LiDB weight set per training identity, in chunks, with an index.

DIR/index.json        format, base model + fingerprint, LiDB config, layer list, the aux-basis hash
                      (adapters.aux_basis_hash; refused if the bases regenerate differently), and
                      per chunk: file name, identity ids, source ids, final losses
DIR/chunk_00000.safetensors
                      `lidb` [identities, D] float32 (lidb_packer vectors, layer order of the index)

Chunks are written atomically and the index is rewritten atomically after each chunk, so a killed
run leaves only complete chunks, and a restarted run skips the chunks the index lists.
"""

import dataclasses
import json
import os
from typing import Any, Iterator

import numpy as np
from safetensors.numpy import load_file, save_file

from hdb_jax.adapters.lidb import (
  LidbConfig,
  LidbParams,
  aux_basis_hash,
  check_aux_basis_hash,
  lidb_packer,
)
from hdb_jax.adapters.targets import LayerSpec
from hdb_jax.errors import UserError
from hdb_jax.io.files import atomic_path, read_format_json, write_text_atomic

FORMAT_NAME = "hdb_jax.weights_dataset"
INDEX = "index.json"


@dataclasses.dataclass
class WeightsDataset:
  """An open weights dataset directory (read and append)."""

  directory: str
  index: dict[str, Any]

  @property
  def layers(self) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(p, n, m) for p, n, m in self.index["layers"])

  @property
  def lidb_config(self) -> LidbConfig:
    return LidbConfig(**self.index["lidb"])

  @property
  def done_chunks(self) -> set[int]:
    return {c["chunk"] for c in self.index["chunks"]}

  def identity_ids(self) -> list[str]:
    return [i for c in self.index["chunks"] for i in c["identity_ids"]]

  def final_losses(self) -> dict[str, float]:
    return {
      i: l for c in self.index["chunks"] for i, l in zip(c["identity_ids"], c["final_losses"])
    }

  def append_chunk(
    self,
    chunk: int,
    identity_ids: list[str],
    source_ids: list[str],
    vectors: np.ndarray,
    final_losses: list[float],
  ) -> None:
    """Writes one chunk file, then the index that lists it (both atomic)."""
    name = f"chunk_{chunk:05d}.safetensors"
    with atomic_path(os.path.join(self.directory, name)) as tmp:
      save_file({"lidb": np.ascontiguousarray(vectors, np.float32)}, tmp)
    self.index["chunks"] = [c for c in self.index["chunks"] if c["chunk"] != chunk] + [
      {
        "chunk": chunk,
        "file": name,
        "identity_ids": list(identity_ids),
        "source_ids": list(source_ids),
        "final_losses": [float(l) for l in final_losses],
      }
    ]
    self.index["chunks"].sort(key=lambda c: c["chunk"])
    write_text_atomic(os.path.join(self.directory, INDEX), json.dumps(self.index, indent=1))

  def vectors(self) -> tuple[list[str], np.ndarray]:
    """All identities' packed LiDB vectors: (ids, [N, D])."""
    ids, arrays = [], []
    for c in self.index["chunks"]:
      arrays.append(load_file(os.path.join(self.directory, c["file"]))["lidb"])
      ids += c["identity_ids"]
    return ids, np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32)

  def as_mapping(self) -> dict[str, np.ndarray]:
    """identity id -> packed vector [D] (what data.paired_examples joins with images)."""
    ids, vectors = self.vectors()
    return dict(zip(ids, vectors))

  def lidb_params(self, identity_id: str) -> LidbParams:
    mapping = self.as_mapping()
    if identity_id not in mapping:
      raise KeyError(f"identity {identity_id!r} is not in {self.directory}")
    return lidb_packer(self.layers, self.lidb_config).unpack(mapping[identity_id])

  def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
    return iter(self.as_mapping().items())


def create_or_open(
  directory: str,
  *,
  base_model: str,
  base_fingerprint: str,
  layers: tuple[LayerSpec, ...],
  lidb_config: LidbConfig,
  settings: dict[str, Any],
  world_version: int | None = None,
) -> WeightsDataset:
  """Opens DIR for appending; a new DIR gets a fresh index. An existing index made with other
  settings (model, layers, LiDB config, training settings) is refused, so resumed chunks match."""
  os.makedirs(directory, exist_ok=True)
  header = {
    "format": FORMAT_NAME,
    "format_version": 1,
    "base_model": base_model,
    "base_fingerprint": base_fingerprint,
    "world_version": world_version,  # the base world model's (None for other models)
    "lidb": dataclasses.asdict(lidb_config),
    "layers": [[l.path, l.n, l.m] for l in layers],
    "settings": settings,
    "aux_hash": aux_basis_hash(layers, lidb_config),
  }
  path = os.path.join(directory, INDEX)
  if not os.path.exists(path):
    dataset = WeightsDataset(directory, {**header, "aux_numpy": np.__version__, "chunks": []})
    write_text_atomic(path, json.dumps(dataset.index, indent=1))
    return dataset
  existing = open_dataset(directory)  # refuses bases that regenerate differently (aux_hash)
  for key, value in header.items():
    if key == "aux_hash":
      continue
    if json.loads(json.dumps(existing.index.get(key))) != json.loads(json.dumps(value)):
      raise UserError(
        f"{directory} holds a weights dataset made with a different {key!r}; "
        "use a new --workdir or the original settings"
      )
  return existing


def open_dataset(directory: str) -> WeightsDataset:
  """Reads DIR/index.json; a missing or foreign index is a UserError."""
  try:
    index = read_format_json(
      os.path.join(directory, INDEX), FORMAT_NAME, "an hdb_jax weights dataset index"
    )
  except FileNotFoundError as e:
    raise UserError(f"{directory} is not a weights dataset (no {INDEX})") from e
  dataset = WeightsDataset(directory, index)
  check_aux_basis_hash(
    index.get("aux_hash"),
    dataset.layers,
    dataset.lidb_config,
    f"weights dataset {directory}",
    index.get("aux_numpy"),
  )
  return dataset
