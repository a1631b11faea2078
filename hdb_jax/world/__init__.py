"""The world: procedural faces in text-controlled scenes, on which the project's own text-to-image
model is trained and HyperDreamBooth is measured. Two rooms: `truth` (faces, scene, render,
styles, sampling, source: the ground truth, nothing learned) and the networks trained on it
(`pretrain`: the world model; `recognizer`: the recognizer and the judge; `quality`).

    python -m hdb_jax.world render --identity=3 --prompt="a face wearing a red hat" --out=face.png
"""

# registers config.data.source='world' and 'synthetic' (hdb_jax.world.truth.source) for every phase
# that imports the world
from hdb_jax.world.truth import source as _source  # noqa: E402, F401
