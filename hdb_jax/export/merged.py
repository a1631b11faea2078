"""merged: the base pipeline with the identity's ΔW added to the UNet and text-encoder kernels,
written as a full diffusers PyTorch pipeline (safetensors). Needs the `torch` extra."""

import os

from hdb_jax.adapters import merge
from hdb_jax.formats import identity as identity_lib
from hdb_jax.io.files import atomic_directory


def write_merged(identity: identity_lib.Identity, out_dir: str, pretrained: str) -> list[str]:
  """Loads `pretrained` (checked to fit the identity), merges ΔW = A B, writes out_dir atomically.

  Raises IdentityFileError when the identity does not fit the model, ModelLoadError when the model
  cannot be loaded, ImportError without torch.
  """
  # pylint: disable=import-outside-toplevel
  from hdb_jax.models import load_model
  from hdb_jax.models.pretrained import resolve_model_dir

  # torch: first, to fail before loading
  from hdb_jax.models.pytorch_export import (
    save_pytorch_pipeline,
  )

  root = resolve_model_dir(pretrained)
  sd = load_model(root)
  identity.check_compatible(sd.params, sd.fingerprint())
  params = merge(sd.params, identity.factors())
  with atomic_directory(out_dir) as tmp:
    written = save_pytorch_pipeline(sd, root, params, tmp)
  return [os.path.join(out_dir, os.path.relpath(path, tmp)) for path in written]
