"""Shared fixtures: tiny models made once per session, and JAX's persistent compilation cache.

Compiling the tiny UNet dominates the suite on a CPU, so compiled programs are cached on disk
(HDB_JAX_TEST_CACHE, default ~/.cache/hdb_jax/jax_cache) and tiny models are shared per session.
"""

import os

# Compile-time, not run-time, dominates this suite on a CPU: LLVM optimization level 0 cuts XLA:CPU
# compiles by about a third (Phase 0 batch + 16-block gradient tests cold: 195 s -> 131 s) for
# slower tiny-model steps. Set before JAX starts its backend; subprocesses inherit it. A level
# given in XLA_FLAGS wins.
# libtpu (the test extra, for tests/test_aot.py) makes every JAX process probe for a TPU and print
# it on stderr; the tests run on the CPU (the AOT compiler still gets its TPU topologies), and the
# CLI tests read stderr. Subprocesses inherit this.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  ).strip()

# pylint: disable=wrong-import-position
import pytest

from hdb_jax import models
from hdb_jax.runtime.compilation_cache import enable_compilation_cache

enable_compilation_cache(os.environ.get("HDB_JAX_TEST_CACHE"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
  """A tiny Stable Diffusion in diffusers Flax format."""
  return models.create_tiny_stable_diffusion(str(tmp_path_factory.mktemp("tiny_flax")))


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory) -> str:
  """The tiny family with a shallower UNet (models.configs.MICRO_UNET: 4 transformer blocks, not
  16).

  For tests of machinery that does not depend on depth (batching, resume, CLIs, sharding), where
  compiling the 16-block UNet's training step would dominate the suite's time on a CPU.
  """
  return models.create_tiny_stable_diffusion(
    str(tmp_path_factory.mktemp("micro_flax")), unet_config=models.configs.MICRO_UNET
  )


@pytest.fixture(scope="session")
def tiny_sd(tiny_dir) -> models.StableDiffusion:
  """The tiny model loaded through the real loading code."""
  return models.load_stable_diffusion(tiny_dir)


@pytest.fixture(scope="session")
def micro_sd(micro_dir) -> models.StableDiffusion:
  """The micro model loaded through the real loading code."""
  return models.load_stable_diffusion(micro_dir)


@pytest.fixture(scope="session")
def tiny_torch_dir(tmp_path_factory) -> str:
  """A tiny Stable Diffusion in diffusers PyTorch format (safetensors), same configs as tiny_dir."""
  from hdb_jax.models.torch_models import create_tiny_pytorch_stable_diffusion

  return create_tiny_pytorch_stable_diffusion(str(tmp_path_factory.mktemp("tiny_torch")))


@pytest.fixture(scope="session")
def tiny_torch_sd(tiny_torch_dir) -> models.StableDiffusion:
  """The PyTorch-format tiny model, converted to Flax by the loader."""
  return models.load_stable_diffusion(tiny_torch_dir)
