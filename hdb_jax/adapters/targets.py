"""Which Dense layers get adapters: regexes over flattened parameter paths.

A layer is named by its '/'-joined Flax module path with the model prefix, e.g.
`unet/down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q` (its kernel is that path +
'/kernel'). The kernel of a Flax Dense is W in R^{n x m} (y = x W), n = in, m = out.
"""

import dataclasses
import re
from typing import Any, Mapping, Sequence

from flax import traverse_util

from hdb_jax.errors import ConfigError

# The paper's layer set: in every UNet transformer block the attention projections (attn1 = self,
# attn2 = cross: to_q, to_k, to_v, to_out.0) and the GEGLU input projection (ff.net.0.proj), and
# CLIP's self-attention (q, k, v, out): 144 + 48 = 192 layers in SD1.5, 28,800 LiDB numbers at
# a=100, b=50, r=1.
UNET_ATTENTION = r"^unet/.*/attn[12]/to_(q|k|v|out_0)/kernel$"
UNET_GEGLU_PROJ = r"^unet/.*/ff/net_0/proj/kernel$"
TEXT_SELF_ATTENTION = r"^text_encoder/.*/self_attn/(q|k|v|out)_proj/kernel$"
DEFAULT_TARGETS = (UNET_ATTENTION, UNET_GEGLU_PROJ, TEXT_SELF_ATTENTION)
# attention only: 176 layers, 26,400 LiDB numbers
ATTENTION_TARGETS = (
  UNET_ATTENTION,
  TEXT_SELF_ATTENTION,
)
MODEL_PREFIXES = ("unet", "text_encoder")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One adapted Dense layer: its path (without '/kernel') and kernel shape (n in, m out)."""

  path: str
  n: int
  m: int

  @property
  def model(self) -> str:
    return self.path.split("/", 1)[0]


def flatten_paths(params: Mapping[str, Any]) -> dict[str, Any]:
  """{'unet': tree, 'text_encoder': tree} -> {'unet/a/b/kernel': leaf, ...} for the models given."""
  flat = {}
  for prefix in MODEL_PREFIXES:
    if prefix in params:
      for key, leaf in traverse_util.flatten_dict(params[prefix]).items():
        flat["/".join((prefix,) + tuple(str(k) for k in key))] = leaf
  return flat


def select_layers(
  params: Mapping[str, Any], patterns: Sequence[str] = DEFAULT_TARGETS
) -> tuple[LayerSpec, ...]:
  """The Dense layers whose kernel path matches any pattern, sorted by path.

  `params` may hold real arrays or jax.ShapeDtypeStruct leaves. A pattern that matches no 2-D kernel
  is a ValueError (a typo would otherwise silently train nothing).
  """
  flat = flatten_paths(params)
  kernels = {
    path: leaf for path, leaf in flat.items() if path.endswith("/kernel") and len(leaf.shape) == 2
  }
  selected = {}
  for pattern in patterns:
    regex = re.compile(pattern)
    hits = [path for path in kernels if regex.search(path)]
    if not hits:
      raise ConfigError(
        f"adapter target pattern {pattern!r} matches no Dense kernel "
        f"(e.g. paths look like {next(iter(sorted(kernels)), '<none>')!r})"
      )
    for path in hits:
      n, m = kernels[path].shape
      selected[path] = LayerSpec(path=path[: -len("/kernel")], n=int(n), m=int(m))
  return tuple(selected[p] for p in sorted(selected))
