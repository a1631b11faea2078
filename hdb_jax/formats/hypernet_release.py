"""A trained hypernetwork as hdb_jax ships it (hdb_jax/assets/world-hypernet): the float16 export
(hypernet_export) plus a release card, release.json + MODEL_CARD.md: the command, Phase 0's and
Phase 1's sizes, training time, seeds, held-out losses, every file's sha256, and the measured
quality once an evaluation's results are added.

  python -m hdb_jax.export --hypernet=WORKDIR --out=DIR --release
  python -m hdb_jax.export --quality=RESULTS_JSON --out=DIR    # adds the measured quality

WORKDIR is a Phase 1 training directory (config.json, metrics.jsonl, and with weights='auto' its
Phase 0 dataset in WORKDIR/phase0/weights). Adding the quality rewrites the card, not the weights.
"""

import json
import os
from typing import Any

import numpy as np

from hdb_jax.config.command import command_for
from hdb_jax.config.phases import HYPER_VARIANTS, hyper_config
from hdb_jax.errors import MissingFileError, OutputExistsError, UserError
from hdb_jax.formats.hypernet_export import export_hypernet
from hdb_jax.formats.weights_dataset import open_dataset
from hdb_jax.io.files import atomic_directory, file_table, write_text_atomic
from hdb_jax.runtime.metrics_log import read_metrics
from hdb_jax.runtime.overview import hardware

RELEASE = "release.json"
MODEL_CARD = "MODEL_CARD.md"
RELEASE_FORMAT = "hdb_jax.hypernet_release"
COMMAND = "python -m hdb_jax.train --config=configs/hyper.py{variant} --workdir=WORKDIR"
QUALITY_METRICS = ("world_judge", "world_id", "world_prompt")  # the judge's first


def _phase0_record(workdir: str, config: dict[str, Any]) -> dict[str, Any]:
  """Phase 0's size and losses: from WORKDIR/phase0 when Phase 1 made it, else the weights path."""
  directory = config["weights"]
  if directory == "auto":
    directory = os.path.join(workdir, "phase0", "weights")
  if not os.path.isdir(directory):
    return {"weights": config["weights"]}
  dataset = open_dataset(directory)
  losses = np.asarray(list(dataset.final_losses().values()))
  return {
    "weights": config["weights"],
    "identities": len(losses),
    "settings": dataset.index["settings"],
    "final_loss_mean": float(losses.mean()),
    "final_loss_range": [float(losses.min()), float(losses.max())],
  }


def training_record(workdir: str, step: int) -> dict[str, Any]:
  """What a Phase 1 WORKDIR did up to `step` (its exported checkpoint): command, config, Phase 0
  and Phase 1 (steps, batch, seconds of training steps from the logged step times, which include
  each start's compiling and the checkpoint saves; last losses; every held-out evaluation)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise MissingFileError(f"{workdir} is not a Phase 1 training directory (no config.json)")
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  metrics = [m for m in read_metrics(workdir) if m["step"] <= step]
  logged = [m for m in metrics if "step_s" in m]
  previous, seconds = 0, 0.0
  for m in logged:  # step_s: the mean over the steps since the previous log line
    seconds += m["step_s"] * (m["step"] - previous)
    previous = m["step"]
  last = logged[-1] if logged else {}
  held_out = [
    {k: m[k] for k in ("step", "eval_weight_loss", "eval_weight_mse", "eval_diffusion_loss")}
    for m in metrics
    if "eval_weight_loss" in m
  ]
  return {
    "command": command_for(config, COMMAND, HYPER_VARIANTS, hyper_config),
    "config": config,
    "exported_on": hardware(),
    "phase0": _phase0_record(workdir, config),
    "phase1": {
      "steps": int(step),
      "batch_size": config["batch_size"],
      "train_step_seconds": seconds,
      "last_losses": {k: last[k] for k in ("loss", "weight_loss", "diffusion_loss") if k in last},
      "held_out_identities": config["eval"]["num_identities"] if config["eval"]["every"] else 0,
      "held_out": held_out,
    },
    "seeds": {"seed": config["seed"], "data": config["data"].get("seed")},
  }


def quality_record(results: dict[str, Any], source: str) -> dict[str, Any]:
  """The World-judge / World-ID / World-prompt means [95% interval] and seconds per identity of an
  evaluation's results.json (e.g. benchmarks/world_tables.py's tables_test.json, every row of its
  tables with the render ceiling), per method."""
  missing = [m for m in QUALITY_METRICS if m not in results.get("metrics", [])]
  if missing:
    raise UserError(
      f"{source} has no {', '.join(missing)} (run it with --config.judge=world "
      "--config.recognizer=world)"
    )
  n = len(results["identities"])
  methods = {}
  for name, method in results["methods"].items():
    methods[name] = {
      "description": method["description"],
      "finetune_steps": method["finetune_steps"],
      "means": {k: method["means"][k] for k in QUALITY_METRICS},
      "ci95": {k: method["ci95"][k] for k in QUALITY_METRICS},
      # personalization seconds per identity, compiling included (what evaluate() writes)
      "seconds_per_identity": method["seconds_per_identity"],
    }
  return {
    "source": source,
    "identities": n,
    "prompts": len(results["prompts"]),
    "sampling": results["sampling"],
    "methods": methods,
  }


def read_release(directory: str) -> dict[str, Any]:
  path = os.path.join(directory, RELEASE)
  if not os.path.exists(path):
    raise MissingFileError(f"{directory} is not a hypernetwork release (no {RELEASE})")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_release_card(directory: str, card: dict[str, Any]) -> None:
  """release.json and its human-readable MODEL_CARD.md."""
  write_text_atomic(os.path.join(directory, RELEASE), json.dumps(card, indent=1, sort_keys=True))
  write_text_atomic(os.path.join(directory, MODEL_CARD), model_card_markdown(card))


def release_hypernet(workdir: str, out_dir: str, overwrite: bool = False) -> list[str]:
  """WORKDIR's newest checkpoint -> OUT as float16 tensors, its export card and the release card,
  all written at once (atomic directory). Returns the files written."""
  if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
    raise OutputExistsError(f"{out_dir} is not empty; pass --overwrite to replace it")
  with atomic_directory(out_dir) as tmp:
    export_hypernet(workdir, tmp, overwrite=True, dtype=np.float16)
    with open(os.path.join(tmp, "hypernet.json"), encoding="utf-8") as f:
      export_card = json.load(f)
    card = {
      "format": RELEASE_FORMAT,
      "version": 1,
      **training_record(workdir, export_card["step"]),
      "base_model": export_card["base_model"],
      "base_fingerprint": export_card["base_fingerprint"],
      "files": file_table(tmp, skip=(RELEASE, MODEL_CARD)),
      "quality": {},
    }
    write_release_card(tmp, card)
  return [os.path.join(out_dir, name) for name in sorted(os.listdir(out_dir))]


def add_quality(directory: str, results_path: str) -> list[str]:
  """Puts an evaluation's results.json (of this hypernetwork) into the release card."""
  card = read_release(directory)
  with open(results_path, encoding="utf-8") as f:
    results = json.load(f)
  card["quality"] = quality_record(results, results_path)
  write_release_card(directory, card)
  return [os.path.join(directory, RELEASE), os.path.join(directory, MODEL_CARD)]


def _cell(value: float | None, spec: str) -> str:
  """A card table cell: the value formatted, '-' where a row has none (the render ceiling)."""
  return "-" if value is None else format(value, spec)


def _quality_lines(quality: dict[str, Any]) -> list[str]:
  sampling = quality["sampling"]
  lines = [
    f"{quality['identities']} held-out identities (never seen by the world model, the judge, the "
    f"recognizer or this network) x {quality['prompts']} prompts x {sampling['num_samples']} "
    f"samples ({sampling['sampler']} {sampling['steps']} steps, guidance {sampling['guidance']}); "
    "means [95% bootstrap interval over identities]; seconds per identity include compiling. From "
    f"`{quality['source']}`.",
    "",
    "| method | finetune steps | World-judge | World-ID | World-prompt | s/identity |",
    "|---|---|---|---|---|---|",
  ]
  for name, method in quality["methods"].items():
    cells = [
      f"{method['means'][k]:.3f} [{method['ci95'][k][0]:.3f}, {method['ci95'][k][1]:.3f}]"
      for k in QUALITY_METRICS
    ]
    lines.append(
      f"| {name}: {method['description']} | {_cell(method['finetune_steps'], 'd')} | "
      + " | ".join(cells)
      + f" | {_cell(method['seconds_per_identity'], '.2f')} |"
    )
  return lines


def model_card_markdown(card: dict[str, Any]) -> str:
  phase0, phase1 = card["phase0"], card["phase1"]
  lines = [
    "# The world hypernetwork",
    "",
    "HyperDreamBooth's hypernetwork for the world model (`hdb_jax/assets/world-sd`): one 64 px "
    "photo of a world face in, the LiDB weights of that identity out (`--config.hypernet=world`). "
    "Trained by hdb_jax on Phase 0's per-identity weights; float16 safetensors, loaded as float32.",
    "",
    "## How it was made",
    "",
    f"    {card['command']}",
    "",
    f"Exported on {card['exported_on']}; the training times are from the run's logs.",
    "",
  ]
  if "identities" in phase0:
    settings = phase0["settings"]
    how = ", ".join(
      f"{label} {value}"
      for label, value in (
        ("steps", settings.get("steps")),
        ("identities per jitted step", settings.get("identities_per_step")),
        ("learning rate", settings.get("optim", {}).get("learning_rate")),
      )
      if value is not None
    )
    lines.append(
      f"- Phase 0: {phase0['identities']:,} identities ({how}); final diffusion loss "
      f"{phase0['final_loss_mean']:.4f} on average ({phase0['final_loss_range'][0]:.4f}-"
      f"{phase0['final_loss_range'][1]:.4f})."
    )
  else:
    lines.append(f"- Phase 0: the weights in {phase0['weights']}.")
  lines += [
    f"- Phase 1: {phase1['steps']:,} steps of batch {phase1['batch_size']}, "
    f"{phase1['train_step_seconds'] / 3600:.2f} h of training steps; last training losses "
    + ", ".join(f"{k} {v:.4f}" for k, v in phase1["last_losses"].items())
    + ".",
    f"- Seeds: {card['seeds']}.",
    "",
    f"Held out of Phase 1 ({phase1['held_out_identities']} Phase 0 identities):",
    "",
    "| step | weight loss | weight MSE | diffusion loss |",
    "|---|---|---|---|",
  ]
  for m in phase1["held_out"]:
    lines.append(
      f"| {m['step']:,} | {m['eval_weight_loss']:.4f} | {m['eval_weight_mse']:.3g} | "
      f"{m['eval_diffusion_loss']:.4f} |"
    )
  lines += ["", "## Measured quality", ""]
  if card["quality"]:
    lines += _quality_lines(card["quality"])
  else:
    lines.append(
      "Not measured yet: `python -m hdb_jax.export --quality=RESULTS_JSON --out=DIR` adds an "
      "evaluation's results."
    )
  lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
  for name, entry in card["files"].items():
    lines.append(f"| `{name}` | {entry['bytes']:,} | `{entry['sha256']}` |")
  return "\n".join(lines) + "\n"
