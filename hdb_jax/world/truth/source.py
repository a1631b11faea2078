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
from typing import Callable, Sequence

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


def _signed(draw: Callable[..., np.ndarray], *args: int) -> np.ndarray:
  """draw(*args) -> uint8 [R, R, 3], as float32 in [-1, 1]."""
  return draw(*args).astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def _world_photo(identity: int, view: int, resolution: int) -> np.ndarray:
  return render(identity, view, Scene(), resolution)


def _face_source(
  label: str,
  identities: Sequence[int],
  views: int,
  name: Callable[[int], str],
  load: Callable[[int, int], Callable[[int], np.ndarray]],
) -> ListSource:
  """len(identities) x views examples (index = k * views + view for the k-th identity); load(id,
  view) gives the loader (resolution -> float32 [R, R, 3] in [-1, 1])."""
  if len(identities) < 1 or views < 1:
    raise SourceError(
      f"the {label.split('(')[0]} source needs num_identities >= 1 and views_per_identity >= 1, "
      f"got {len(identities)} and {views}"
    )
  examples = [
    Example(identity_id=name(i), index=k * views + v, name=f"{name(i)} view {v}", load=load(i, v))
    for k, i in enumerate(identities)
    for v in range(views)
  ]
  return ListSource(label, examples)


def world_source(split: str, data_config: ml_collections.ConfigDict) -> ListSource:
  """num_identities x views_per_identity world photos of `split` ('' / 'train' or 'held_out');
  index = k * views + view for the k-th identity of the split."""
  if split not in SPLITS:
    raise SourceError(f"config.data.source='world:{split}': the splits are 'world' and "
                      "'world:held_out'")  # fmt: skip
  count, views = int(data_config.num_identities), int(data_config.views_per_identity)
  start = SPLITS[split]
  return _face_source(f"world{':' + split if split else ''}({count}x{views})",
                      range(start, start + max(count, 0)), views, identity_name,
                      lambda i, v: functools.partial(_signed, _world_photo, i, v))  # fmt: skip


def synthetic_name(identity: int) -> str:
  """'synthetic/00012': the identity id the synthetic source gives face 12."""
  return f"synthetic/{identity:05d}"


def synthetic_face(identity: int, view: int, seed: int, resolution: int) -> np.ndarray:
  """uint8 [R, R, 3]: a face alone on its view's plain backdrop."""
  params = faces.identity_params(seed, identity)
  return faces.render_face(params, faces.draw_view(seed, identity, view), resolution)


def synthetic_source(num_identities: int, views_per_identity: int, seed: int = 0) -> ListSource:
  """num_identities x views_per_identity faces; index = identity * views + view."""
  label = f"synthetic({num_identities}x{views_per_identity}, seed={seed})"
  loader = lambda i, v: functools.partial(_signed, synthetic_face, i, v, seed)
  return _face_source(label, range(max(num_identities, 0)), views_per_identity, synthetic_name,
                      loader)  # fmt: skip


def _synthetic_kind(argument: str, data_config: ml_collections.ConfigDict) -> ListSource:
  if argument:
    raise SourceError(f"config.data.source='synthetic:{argument}': 'synthetic' takes no argument")
  return synthetic_source(int(data_config.num_identities), int(data_config.views_per_identity),
                          int(data_config.seed))  # fmt: skip


register_source("world", world_source)
register_source("synthetic", _synthetic_kind, usage="synthetic")  # takes no argument
