"""Flax layer paths -> PyTorch module names (diffusers/transformers) and kohya LoRA names.

Flax paths name list members `<list>_<i>` (`down_blocks_0`, `to_out_0`) in the diffusers UNet and
`<list>/<i>` (`layers/0`) in the transformers CLIP text encoder; PyTorch names them `<list>.<i>`.
This is string mapping only (no torch); tests check it against every Linear of the PyTorch models.
"""

import re

# PyTorch attribute names that end in _<digit> themselves (diffusers' TimestepEmbedding), not list
# items.
PYTORCH_NAMES_WITH_DIGITS = frozenset({"linear_1", "linear_2"})
KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
_LIST_ITEM = re.compile(r"^(.+)_(\d+)$")


def pytorch_module_name(layer_path: str) -> tuple[str, str]:
  """'unet/down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_out_0'
  -> ('unet', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0');
  'text_encoder/text_model/encoder/layers/0/self_attn/q_proj'
  -> ('text_encoder', 'text_model.encoder.layers.0.self_attn.q_proj')."""
  model, _, rest = layer_path.partition("/")
  if model not in KOHYA_PREFIXES or not rest:
    raise ValueError(f"layer {layer_path!r} is not in a known model ({', '.join(KOHYA_PREFIXES)})")
  parts = rest.split("/")
  if model == "unet":
    parts = [p if p in PYTORCH_NAMES_WITH_DIGITS else _LIST_ITEM.sub(r"\1.\2", p) for p in parts]
  return model, ".".join(parts)


def kohya_name(layer_path: str) -> str:
  """'unet/down_blocks_0/.../attn1/to_q' -> 'lora_unet_down_blocks_0_..._attn1_to_q' (kohya-ss,
  A1111)."""
  model, name = pytorch_module_name(layer_path)
  return KOHYA_PREFIXES[model] + name.replace(".", "_")
