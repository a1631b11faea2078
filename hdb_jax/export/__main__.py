"""Exports an identity file to PyTorch (LoRA files for diffusers / web UIs, or a merged pipeline),
or a trained hypernetwork to one framework-neutral safetensors file.

  python -m hdb_jax.export --identity=ID.safetensors --format=diffusers|kohya|merged --out=DIR \\
      [--pretrained=MODEL] [--overwrite]
  python -m hdb_jax.export --hypernet=TRAIN_WORKDIR --out=DIR [--float16] [--overwrite]
  python -m hdb_jax.export --hypernet=TRAIN_WORKDIR --out=DIR --release [--overwrite]
  python -m hdb_jax.export --quality=RESULTS_JSON --out=RELEASE_DIR

Formats:
  diffusers  DIR/pytorch_lora_weights.safetensors, a diffusers/PEFT LoRA:
             pipe = StableDiffusionPipeline.from_pretrained(BASE); pipe.load_lora_weights(DIR)
  kohya      DIR/<ID>_kohya.safetensors, a kohya-ss/A1111 LoRA for web UIs and ComfyUI
  merged     DIR/, a full diffusers PyTorch pipeline (safetensors) with the identity merged into the
             UNet and text encoder: StableDiffusionPipeline.from_pretrained(DIR). Needs torch.

Every format reproduces the identity exactly at LoRA scale 1.0 (rank 1 + r': LiDB with its aux bases
folded in, plus the rank-relaxed LoRA). --pretrained names the base model (hub id, directory, or
tiny[:DIR]); merged starts from it (default: the base model recorded in the identity file), and the
LoRA formats check the identity against it when it is given. Identities made for a different base
model are refused. Existing output is replaced only with --overwrite; writes are atomic.
Prompt with the identity's token, e.g. "a photo of sks face".

--hypernet writes DIR/hypernet.safetensors + DIR/hypernet.json (tensor names and the slot layout are
documented in hdb_jax/formats/hypernet_export.py); personalize loads DIR with --config.hypernet=DIR,
no orbax needed. --release ships it: float16 tensors plus a release card (release.json +
MODEL_CARD.md: command, Phase 0/1 sizes, training time, held-out losses, sha256s;
hdb_jax/formats/hypernet_release.py); --quality then adds an evaluation's World-judge / World-ID /
World-prompt results (e.g. benchmarks/world_tables.py's tables_test.json) to a release's card.
"""

import numpy as np
from absl import app, flags

from hdb_jax.export.api import FORMATS, export_identity
from hdb_jax.formats.hypernet_export import export_hypernet
from hdb_jax.formats.hypernet_release import add_quality, release_hypernet
from hdb_jax.runtime.cli import run_main

_IDENTITY = flags.DEFINE_string("identity", None, "Identity file (.safetensors) to export.")
_HYPERNET = flags.DEFINE_string("hypernet", None, "Or: a hypernetwork training workdir to export.")
_FORMAT = flags.DEFINE_enum("format", None, FORMATS, "Export format of an identity (see above).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_PRETRAINED = flags.DEFINE_string(
  "pretrained",
  None,
  "Base model (hub id, diffusers directory, or tiny[:DIR]). merged: the model to merge "
  "into (default: the identity's base model). LoRA formats: the identity is checked against it.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing output.")
_RELEASE = flags.DEFINE_bool(
  "release", False, "--hypernet: a release (float16 + release card, see above)."
)
_QUALITY = flags.DEFINE_string(
  "quality", None, "Or: an evaluation's results.json to add to the release card in --out."
)
_FLOAT16 = flags.DEFINE_bool(
  "float16", False, "--hypernet: store the tensors as float16 (half the bytes; loaded as float32)."
)
flags.mark_flags_as_required(["out"])


def main(argv: list[str]) -> None:
  del argv
  if sum(map(bool, (_IDENTITY.value, _HYPERNET.value, _QUALITY.value))) != 1:
    raise app.UsageError(
      "give exactly one of --identity=FILE (with --format), --hypernet=WORKDIR or "
      "--quality=RESULTS_JSON"
    )
  if _IDENTITY.value and not _FORMAT.value:
    raise app.UsageError("--format is required with --identity")
  if (_RELEASE.value or _FLOAT16.value) and not _HYPERNET.value:
    raise app.UsageError("--release and --float16 go with --hypernet=WORKDIR")
  if _RELEASE.value and _FLOAT16.value:
    raise app.UsageError("a --release is float16 already; drop --float16")
  if (_FORMAT.value or _PRETRAINED.value) and not _IDENTITY.value:
    raise app.UsageError("--format and --pretrained go with --identity=FILE")
  if _QUALITY.value:
    written = add_quality(_OUT.value, _QUALITY.value)
  elif _HYPERNET.value and _RELEASE.value:
    written = release_hypernet(_HYPERNET.value, _OUT.value, overwrite=_OVERWRITE.value)
  elif _HYPERNET.value:
    dtype = np.float16 if _FLOAT16.value else np.float32
    written = export_hypernet(_HYPERNET.value, _OUT.value, overwrite=_OVERWRITE.value, dtype=dtype)
  else:
    written = export_identity(
      _IDENTITY.value,
      _FORMAT.value,
      _OUT.value,
      pretrained=_PRETRAINED.value,
      overwrite=_OVERWRITE.value,
    )
  for path in written:
    print(path)


if __name__ == "__main__":
  run_main(main)
