"""World faces as data sources: `--config.data.source=world` (or `world:held_out`), and
`synthetic`.

    source = make_source(config.data)   # config.data.source = 'world', num_identities = 1000
    source.examples[0].load(64)          # float32 [64, 64, 3] in [-1, 1]: identity 0's photo

Each identity's photo is its render in the default scene (caption 'a face': photo style, studio
background, no accessories, neutral), view 0, 1, ... `views_per_identity`. `world` reads identity
ids 0..num_identities-1, among those the world model was trained on (it never saw their names: no
caption names an identity); `world:held_out` reads ids from sampling.HELD_OUT_START on, which no
world model, recognizer or hypernetwork trains on. `synthetic` is the faces alone on a plain
backdrop (faces.render_face), for any `config.data.seed`: identity ids 'synthetic/00000', ...
Importing hdb_jax.world registers both kinds.
"""

import functools
import os

import ml_collections
import numpy as np

from hdb_jax.data.sources import Example, ListSource, SourceError, register_source
from hdb_jax.io.images import save_png
from hdb_jax.world.truth import faces
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import HELD_OUT_START
from hdb_jax.world.truth.scene import Scene

SPLITS = {"": 0, "train": 0, "held_out": HELD_OUT_START}


def identity_name(identity: int) -> str:
  """'world/0000012': the identity id a world source gives world identity 12."""
  return f"world/{identity:07d}"


def identity_number(name: str) -> int:
  """12 for 'world/0000012' (identity_name's inverse)."""
  return int(name.rsplit("/", 1)[-1])


def save_photos(directory: str, identities: list[int], resolution: int = 64) -> list[str]:
  """Each identity's photo (its render in the default scene, view 0) as DIR/world_<id>.png, the
  way the demo and the world benchmarks hand held-out faces to personalize / evaluate; returns the
  paths in order."""
  paths = [os.path.join(directory, f"world_{identity:07d}.png") for identity in identities]
  for identity, path in zip(identities, paths):
    save_png(path, render(identity, 0, None, resolution))
  return paths


def _photo(identity: int, view: int, resolution: int) -> np.ndarray:
  image = render(identity, view, Scene(), resolution)
  return image.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def world_source(split: str, data_config: ml_collections.ConfigDict) -> ListSource:
  """num_identities x views_per_identity world photos of `split` ('' / 'train' or 'held_out');
  index = k * views + view for the k-th identity of the split."""
  if split not in SPLITS:
    raise SourceError(f"config.data.source='world:{split}': the splits are 'world' and "
                      "'world:held_out'")  # fmt: skip
  count, views = int(data_config.num_identities), int(data_config.views_per_identity)
  if count < 1 or views < 1:
    raise SourceError(
      f"the world source needs num_identities >= 1 and views_per_identity >= 1, got {count} and "
      f"{views}"
    )
  start = SPLITS[split]
  examples = [
    Example(
      identity_id=identity_name(start + k),
      index=k * views + v,
      name=f"{identity_name(start + k)} view {v}",
      load=functools.partial(_photo, start + k, v),
    )
    for k in range(count)
    for v in range(views)
  ]
  return ListSource(f"world{':' + split if split else ''}({count}x{views})", examples)


def synthetic_name(identity: int) -> str:
  """'synthetic/00012': the identity id the synthetic source gives face 12."""
  return f"synthetic/{identity:05d}"


def synthetic_face(identity: int, view: int, seed: int, resolution: int) -> np.ndarray:
  """uint8 [R, R, 3]: a face alone on its view's plain backdrop."""
  params = faces.identity_params(seed, identity)
  return faces.render_face(params, faces.draw_view(seed, identity, view), resolution)


def _synthetic_photo(identity: int, view: int, seed: int, resolution: int) -> np.ndarray:
  image = synthetic_face(identity, view, seed, resolution)
  return image.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def synthetic_source(num_identities: int, views_per_identity: int, seed: int = 0) -> ListSource:
  """num_identities x views_per_identity faces; index = identity * views + view."""
  if num_identities < 1 or views_per_identity < 1:
    raise SourceError(
      f"synthetic source needs num_identities >= 1 and views_per_identity >= 1, got "
      f"{num_identities} and {views_per_identity}"
    )
  examples = [
    Example(
      identity_id=synthetic_name(i),
      index=i * views_per_identity + v,
      name=f"{synthetic_name(i)} view {v}",
      load=functools.partial(_synthetic_photo, i, v, seed),
    )
    for i in range(num_identities)
    for v in range(views_per_identity)
  ]
  return ListSource(f"synthetic({num_identities}x{views_per_identity}, seed={seed})", examples)


def _synthetic_kind(argument: str, data_config: ml_collections.ConfigDict) -> ListSource:
  if argument:
    raise SourceError(f"config.data.source='synthetic:{argument}': 'synthetic' takes no argument")
  return synthetic_source(int(data_config.num_identities), int(data_config.views_per_identity),
                          int(data_config.seed))  # fmt: skip


register_source("world", world_source)
register_source("synthetic", _synthetic_kind)
