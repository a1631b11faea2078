"""The world: procedural faces in text-controlled scenes (scene, render, styles): the ground truth
on which the project's own text-to-image model is trained and HyperDreamBooth is measured.

    python -m hdb_jax.world render --identity=3 --prompt="a face wearing a red hat" --out=face.png
"""

# registers config.data.source='world' (hdb_jax.world.source) for every phase that imports the world
from hdb_jax.world import source as _source  # noqa: E402, F401
