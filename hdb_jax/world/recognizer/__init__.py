"""The world recognizer, the offline stand-in for the paper's Face Rec and CLIP-T: World-ID (an
identity embedding) and World-prompt (which contexts and style an image shows), two small Flax
CNNs trained on world renders with their ground truth. `network` (modules, apply, files),
`train` (the training stage), `verification` (ROC AUC and TAR at FAR), `score` (images against a
reference and a prompt).

    python -m hdb_jax.world.recognizer --config=configs/recognizer.py --workdir=/tmp/recognizer
"""
