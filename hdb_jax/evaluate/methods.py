"""The comparison modes of the paper's Tables 1-3, parsed from --config.methods (comma-separated):

full        hypernetwork prediction + rank-relaxed finetune of `steps` steps (the method)
only_hyper  hypernetwork prediction alone (0 finetune steps)
no_hyper    the rank-relaxed finetune without the hypernetwork: LoRA of rank `lora_rank` from zero,
            `steps` steps
k1          as full, with 1 hypernetwork iteration instead of the checkpoint's
lora@N      DreamBooth-style LoRA (rank `lora_rank`) from scratch for N steps; repeat for several N
base        the base model without any identity (the prompts' token is the untrained identifier):
            the floor every method's identity score is measured against
"""

import dataclasses

from hdb_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Method:
  """One comparison mode: whether it uses the hypernetwork, how many finetune steps, its
  iterations."""

  name: str
  steps: int
  hyper: bool
  refine_steps: int | None
  description: str


def parse_methods(spec: str, steps: int, lora_rank: int) -> list[Method]:
  """'full,only_hyper,no_hyper,k1,lora@N,...' -> methods (ConfigError on an unknown or repeated
  one)."""
  names = [n.strip() for n in spec.split(",") if n.strip()]
  if not names:
    raise ConfigError("--config.methods is empty; e.g. full,only_hyper,no_hyper,k1,lora@400")
  if len(set(names)) != len(names):
    raise ConfigError(f"--config.methods repeats a method: {spec!r}")
  methods = []
  for name in names:
    if name == "base":
      methods.append(Method(name, 0, False, None, "the base model, no identity (untrained token)"))
    elif name == "full":
      methods.append(
        Method(name, steps, True, None, f"hypernetwork + rank-relaxed finetune ({steps} steps)")
      )
    elif name == "only_hyper":
      methods.append(Method(name, 0, True, None, "hypernetwork prediction only (no finetune)"))
    elif name == "no_hyper":
      methods.append(
        Method(
          name,
          steps,
          False,
          None,
          f"rank-relaxed finetune without the hypernetwork: "
          f"rank-{lora_rank} LoRA from zero, {steps} steps",
        )
      )
    elif name == "k1":
      methods.append(
        Method(
          name, steps, True, 1, f"hypernetwork with 1 iteration (k=1) + finetune ({steps} steps)"
        )
      )
    elif name.startswith("lora@") and name[5:].isdigit() and int(name[5:]) > 0:
      n = int(name[5:])
      methods.append(
        Method(
          name, n, False, None, f"DreamBooth-style rank-{lora_rank} LoRA from scratch, {n} steps"
        )
      )
    else:
      raise ConfigError(
        f"unknown method {name!r}: use base, full, only_hyper, no_hyper, k1 or lora@N (N >= 1)"
      )
  return methods
