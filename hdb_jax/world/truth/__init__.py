"""The world's ground truth: who each identity is (faces), what a caption asks for (scene), how an
image is drawn (render, styles), which identities and scenes each split holds (sampling), and the
world as a data source (source). Nothing here is learned: the models and networks trained on the
world live beside it (world.pretrain, world.recognizer, world.quality).

Every file made from world images records the renderer's version (`version_record()`); a file of
another version is refused in one line (`check_version`).
"""

from typing import Any

from hdb_jax.errors import UserError
from hdb_jax.world.truth.faces import WORLD_VERSION

VERSION_KEY = "world_version"


class WorldVersionError(UserError):
  """A file made for another version of the world's renderer."""


def version_record() -> dict[str, int]:
  """{'world_version': WORLD_VERSION}: what a card, dataset or network file of the world holds."""
  return {VERSION_KEY: WORLD_VERSION}


def check_version(record: dict[str, Any], what: str) -> None:
  """Refuses `what` (a path or a name) when its record was made for another world version (no
  'world_version' key: world v1, which did not record one)."""
  version = int(record.get(VERSION_KEY, 1))
  if version != WORLD_VERSION:
    raise WorldVersionError(
      f"{what} was made for world v{version}; this hdb_jax draws world v{WORLD_VERSION} (its faces "
      "differ): remake it on this version (git keeps the v1 files)"
    )
