"""`export_identity`: an identity file to PyTorch LoRA files or a merged pipeline."""

import os
from typing import Sequence

from safetensors.numpy import save_file

from hdb_jax.errors import UserError
from hdb_jax.export import kohya, merged, peft
from hdb_jax.formats import identity as identity_lib
from hdb_jax.io.files import atomic_path

FORMATS: Sequence[str] = ("diffusers", "kohya", "merged")
LORA_FORMATS = {
  "diffusers": peft,
  "kohya": kohya,
}  # each: file_name, state_dict, safetensors_metadata


class ExportError(UserError, RuntimeError):
  """An export was refused or failed; the message says why and what to do."""


def _as_identity(
  identity: str | os.PathLike | identity_lib.Identity,
) -> tuple[identity_lib.Identity, str]:
  """(identity, a short name for file names: the file's stem, or 'identity')."""
  if isinstance(identity, identity_lib.Identity):
    return identity, "identity"
  path = os.fspath(identity)
  return identity_lib.load(path), os.path.splitext(os.path.basename(path))[0]


def _check_base(identity: identity_lib.Identity, pretrained: str) -> None:
  """Refuses an identity made for another model than `pretrained` (configs only, no weights
  read)."""
  from hdb_jax.models import ModelLoadError
  from hdb_jax.models.describe import describe_model

  try:
    base = describe_model(pretrained)
  except ModelLoadError as e:
    raise ExportError(f"cannot read base model {pretrained!r}: {e}") from e
  try:
    identity.check_compatible(base.params, base.fingerprint)
  except identity_lib.IdentityFileError as e:
    raise _different_base(pretrained, e) from e


def _different_base(pretrained: str, error: Exception) -> identity_lib.IdentityFileError:
  return identity_lib.IdentityFileError(
    f"refusing to export for {pretrained!r}, a different base model: {error}"
  )


def _refuse_existing(path: str, overwrite: bool) -> None:
  if os.path.lexists(path) and not overwrite:
    raise ExportError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")


def _info(identity: identity_lib.Identity, name: str) -> dict[str, object]:
  """What the exported file says about its origin (in the safetensors header)."""
  return {
    "source": name,
    "base_model": identity.meta.base_model,
    "token": identity.meta.token,
    "base_fingerprint": identity.meta.base_fingerprint,
    "exporter": "hdb_jax",
  }


def _write_lora(
  identity: identity_lib.Identity, name: str, fmt: str, out_dir: str, overwrite: bool
) -> str:
  """Writes out_dir/<the format's file name> atomically; returns its path."""
  lora_format = LORA_FORMATS[fmt]
  path = os.path.join(out_dir, lora_format.file_name(name))
  _refuse_existing(path, overwrite)
  factors = identity.factors()
  try:
    tensors = lora_format.state_dict(factors)
    metadata = lora_format.safetensors_metadata(factors, _info(identity, name))
  except ValueError as e:
    raise ExportError(f"cannot export as {fmt}: {e}") from e
  with atomic_path(path) as tmp:
    save_file(tensors, tmp, metadata=metadata)
  return path


def _write_merged(
  identity: identity_lib.Identity, out_dir: str, pretrained: str, overwrite: bool
) -> list[str]:
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    if not overwrite:
      raise ExportError(
        f"{out_dir} exists and is not empty; pass --overwrite (overwrite=True) to replace it"
      )
    if not os.path.exists(os.path.join(out_dir, "model_index.json")):
      raise ExportError(
        f"{out_dir} is not a pipeline directory (no model_index.json); refusing to replace it "
        "even with --overwrite: choose a new or empty directory"
      )
  elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ExportError(f"{out_dir} exists and is not a directory")
  try:
    import torch  # noqa: F401  (only: is PyTorch installed?)
  except ImportError as e:
    raise ExportError("the merged export needs PyTorch: pip install 'hdb_jax[torch]'") from e
  from hdb_jax.models import ModelLoadError

  try:
    return merged.write_merged(identity, out_dir, pretrained)
  except ModelLoadError as e:
    raise ExportError(f"cannot load base model {pretrained!r}: {e}") from e
  except identity_lib.IdentityFileError as e:
    raise _different_base(pretrained, e) from e


def export_identity(
  identity: str | os.PathLike | identity_lib.Identity,
  fmt: str,
  out_dir: str,
  *,
  pretrained: str | None = None,
  overwrite: bool = False,
) -> list[str]:
  """Writes `identity` (a path or an Identity) in format `fmt` under `out_dir`; returns the written
  files.

  fmt: 'diffusers' (PEFT LoRA), 'kohya' (kohya/A1111 LoRA) or 'merged' (full PyTorch pipeline).
  pretrained: the base model (hub id, directory or 'tiny[:DIR]'); merged defaults to the identity's
  own base model; the LoRA formats check the identity against it only when it is given.
  Existing output is replaced only with overwrite=True; every write is atomic.
  Raises ExportError (refused: output exists, unreadable base, no torch) and IdentityFileError
  (unreadable identity, or one made for a different base model).
  """
  if fmt not in FORMATS:
    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
  ident, name = _as_identity(identity)
  if not ident.lidb and not ident.lora:
    raise ExportError("the identity holds no adapter weights")
  if fmt == "merged":
    return _write_merged(ident, out_dir, pretrained or ident.meta.base_model, overwrite)
  if pretrained:
    _check_base(ident, pretrained)
  return [_write_lora(ident, name, fmt, out_dir, overwrite)]
