"""Identity files to PyTorch: diffusers/PEFT LoRA, kohya/A1111 LoRA, or a merged diffusers pipeline.

    python -m hdb_jax.export --identity=me.safetensors --format=diffusers --out=export/diffusers
    hdb_jax.export.export_identity("me.safetensors", "kohya", "export/kohya")

The LoRA formats need neither torch nor the base model's weights; `merged` needs the `torch` extra.
"""

from hdb_jax.export.api import FORMATS, ExportError, export_identity

__all__ = ["FORMATS", "ExportError", "export_identity"]
