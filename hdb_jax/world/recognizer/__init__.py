"""The world's two networks, trained on world renders with their ground truth: the recognizer (the
offline stand-in for the paper's Face Rec and CLIP-T: World-ID, an identity embedding that is also
the hypernetwork's encoder, and World-prompt, which contexts and style an image shows) and the judge
(another architecture, seed and identity range: identity for the final tables and tests only).
`network` (modules, apply, files by role), `train` (the training stage), `verification` (ROC AUC,
TAR at FAR, calibration, face-parameter recovery); images are scored by world.quality.

    python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer
    python -m hdb_jax.world.recognizer --config=configs/judge.py --workdir=/tmp/judge
"""
