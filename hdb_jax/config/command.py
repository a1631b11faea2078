"""The command line that gives a config: its nearest variant plus --config.KEY=VALUE overrides (what
release cards record as the command that made them)."""

import json
import shlex
from typing import Any, Callable, Sequence

import ml_collections
from flax import traverse_util


def config_fields(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """config's leaves by dotted path, as JSON values (tuples as lists)."""
  tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  flat = traverse_util.flatten_dict(tree, sep=".")
  return json.loads(json.dumps(flat, default=list))


def _flag_value(value: Any) -> str:
  """A JSON field value as ml_collections reads it back from a --config.KEY flag."""
  if isinstance(value, list):
    return repr(tuple(value))
  return str(value)


def command_for(
  config: ml_collections.ConfigDict | dict,
  command: str,
  variants: Sequence[str],
  variant_config: Callable[[str], ml_collections.ConfigDict],
) -> str:
  """`command` (holding '{variant}', which becomes ':name' or '') on the variant whose config is
  nearest to `config`, with a --config.KEY=VALUE for each field that differs from it (sequences
  as Python tuples, '(32, 64)': ml_collections overrides tuple fields, never list ones)."""
  fields = config_fields(config)
  commands = []
  for variant in variants:
    default = config_fields(variant_config(variant))
    overrides = [
      f"--config.{key}={shlex.quote(_flag_value(value))}"
      for key, value in sorted(fields.items())
      if default.get(key) != value
    ]
    base = command.format(variant=f":{variant}" if variant else "")
    commands.append(" ".join([base] + overrides))
  return min(commands, key=len)
