"""Silences the deprecation chatter of the last Flax releases of diffusers and transformers."""

import logging
import os
import warnings


def silence_flax_deprecations() -> None:
  """Hides the 'Flax classes are deprecated' warnings and the libraries' info logging.

  Called once when `hdb_jax.models` is imported, before diffusers/transformers are.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # transformers: never import TensorFlow (tf.data is ours alone)
  os.environ.setdefault("USE_TF", "0")
  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
  os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
  os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
  for pattern in (
    r".*Flax.*deprecated.*",
    r".*[Ff]lax.*will be removed.*",
    r".*JAX.*support.*deprecated.*",
    r".*TensorFlow and JAX classes are deprecated.*",
  ):
    warnings.filterwarnings("ignore", message=pattern)
  for name in ("diffusers", "transformers"):
    logging.getLogger(name).setLevel(logging.ERROR)
