"""The world model as hdb_jax ships it: a diffusers PyTorch pipeline with fp16 safetensors (which
the project's loader and PyTorch diffusers both read), and its card (card.json + MODEL_CARD.md):
the command, steps, wall time, seeds, every file's sha256, and the measured quality once
`python -m hdb_jax.world quality` has added it. Importing this module imports torch.
"""

import json
import os
from typing import Any

import ml_collections
import numpy as np

from hdb_jax.config.command import command_for as config_command
from hdb_jax.config.world import WORLD_VARIANTS, pretrain_config
from hdb_jax.io.files import atomic_directory, file_table, write_text_atomic
from hdb_jax.models.loading import WORLD_CARD_FORMAT
from hdb_jax.models.pytorch_export import save_pytorch_pipeline
from hdb_jax.runtime.overview import hardware
from hdb_jax.world.pretrain.history import CARD, unet_steps
from hdb_jax.world.truth import VERSION_KEY, version_record

CARD_FORMAT = WORLD_CARD_FORMAT  # what models.loading reads a world model's version by
MODEL_CARD = "MODEL_CARD.md"
COMMAND = "python -m hdb_jax.world.pretrain --config=configs/world.py{variant} --workdir=WORKDIR"


def command_for(config: ml_collections.ConfigDict) -> str:
  """The command that trains `config`: COMMAND on the configs/world.py variant closest to it, with
  a --config.KEY=VALUE for each field that differs."""
  return config_command(config, COMMAND, WORLD_VARIANTS, pretrain_config)


def write_release(
  sd: Any,
  model_dir: str,
  out_dir: str,
  config: ml_collections.ConfigDict,
  records: dict[str, dict[str, float]],
  earlier: list[dict[str, Any]] = (),
) -> str:
  """sd (loaded from model_dir) -> out_dir: fp16 PyTorch pipeline + card. Returns out_dir.
  records: this run's stages; earlier: the runs this one continued (loop.earlier_training)."""
  with atomic_directory(out_dir) as tmp:
    save_pytorch_pipeline(sd, model_dir, sd.params, tmp, dtype=np.float16)
    card = {
      "format": CARD_FORMAT,
      "version": 1,
      **version_record(),
      "command": command_for(config),
      "config": config.to_dict(),
      "stages": records,
      "earlier": list(earlier),
      "hardware": hardware(),
      "vae_scaling_factor": sd.vae_scaling_factor,
      "files": file_table(tmp, skip=(CARD, MODEL_CARD)),
      "quality": {},
    }
    write_card(tmp, card)
  return out_dir


def read_card(directory: str) -> dict[str, Any]:
  with open(os.path.join(directory, CARD), encoding="utf-8") as f:
    return json.load(f)


def write_card(directory: str, card: dict[str, Any]) -> None:
  """card.json and its human-readable MODEL_CARD.md (card['recipe'], markdown, if any: what each
  choice of the recipe bought, measured against the alternative)."""
  write_text_atomic(
    os.path.join(directory, CARD), json.dumps(card, indent=2, sort_keys=True, default=list)
  )
  write_text_atomic(os.path.join(directory, MODEL_CARD), model_card_markdown(card))


def quality_markdown(quality: dict[str, Any]) -> list[str]:
  """The report of hdb_jax.world.quality.measure_quality as a table."""
  samples, renders = quality["world_prompt_samples"], quality["world_prompt_renders"]
  sampling = quality["sampling"]
  lines = [
    f"{quality['samples']} samples ({quality['prompts']} prompts, every context and style; "
    f"{sampling['sampler']} {sampling['steps']} steps, guidance {sampling['guidance']}), scored "
    "by the world recognizer; renders of the same prompts are its ceiling.",
    "",
    "| measure | samples | renders |",
    "|---|---|---|",
    f"| World-prompt accuracy (every attribute) | {samples['mean']:.3f} | {renders['mean']:.3f} |",
  ]
  for name, value in samples["per_attribute"].items():
    lines.append(f"| ... {name} | {value:.3f} | {renders['per_attribute'][name]:.3f} |")
  frechet = {k: "n/a" if v is None else f"{v:.3f}" for k, v in quality["frechet_world_id"].items()}
  lines += [
    f"| the attributes a prompt names | {samples['named']:.3f} | {renders['named']:.3f} |",
    f"| all attributes right | {samples['all_correct']:.3f} | {renders['all_correct']:.3f} |",
    f"| World-ID Frechet distance to renders (lower is better) | {frechet['samples']} | "
    f"{frechet['renders']} |",
  ]
  for name, entry in quality.get("sharpness", {}).get("samples", {}).items():
    rendered = quality["sharpness"]["renders"][name]
    lines.append(f"| {name} energy, as a fraction of renders of the same prompts | {entry:.3f} | "
                 f"{rendered:.3f} |")  # fmt: skip
  colour = quality.get("face_colour")
  if colour:
    rgb = {k: "(" + ", ".join(f"{v:.0f}" for v in c) + ")" for k, c in colour["mean_rgb"].items()}
    lines.append(
      f"| face-centre colour, mean RGB (per-prompt RMS error against the renders; renders of "
      f"other identities: {colour['rms_error']['renders']:.1f}) | {rgb['samples']} "
      f"({colour['rms_error']['samples']:.1f}) | {rgb['renders']} |"
    )
  judged = quality.get("judge_face_rate")
  if judged:
    lines.append(
      f"| the judge reads a face of some identity (noise: {judged['rate']['noise']:.3f})"
      f" | {judged['rate']['samples']:.3f} | {judged['rate']['renders']:.3f} |"
    )
  lines += [
    "",
    f"Frechet distance of uniform noise images (the control): {frechet['noise']}. VAE "
    f"reconstruction of held-out renders: {quality['vae_psnr_db']:.2f} dB PSNR.",
  ]
  return lines


def _stage_rows(run: dict[str, Any]) -> list[str]:
  rows = []
  for name, record in run["stages"].items():
    batch = run["config"][f"{name}_stage"]["batch_size"]
    rows.append(
      f"| {name} | {int(record.get('steps', 0)):,} | {batch} | "
      f"{record.get('wall_s', 0) / 3600:.2f} h | {record.get('loss', float('nan')):.4f} |"
    )
  return rows


def model_card_markdown(card: dict[str, Any]) -> str:
  config = card["config"]
  runs = card.get("earlier", []) + [card]
  lines = [
    "# The world model",
    "",
    "A small Stable Diffusion (diffusers format, fp16 safetensors) that hdb_jax trains from "
    "scratch on its procedural world of faces (`hdb_jax/world`), so that HyperDreamBooth can be "
    "seen and measured offline. The identity is never in a caption; contexts and styles are.",
    "",
    "## How it was made",
    "",
  ]
  for number, run in enumerate(runs, 1):
    if len(runs) > 1:
      lines += [f"Run {number} of {len(runs)}" + (" (continues the one before)" if number > 1
                                                   else "") + ":", ""]  # fmt: skip
    on = f" (on {run['hardware']})" if "hardware" in run else ""
    lines += [f"    {run['command']}", "", f"| stage | steps | batch | wall time{on} | last loss |",
              "|---|---|---|---|---|"] + _stage_rows(run) + [""]  # fmt: skip
  hours = sum(r.get("wall_s", 0) for run in runs for r in run["stages"].values()) / 3600
  lines += [
    f"UNet steps in all: {unet_steps(runs):,}; wall time in all: {hours:.2f} h.",
    "",
    f"World v{card.get(VERSION_KEY, 1)}. Seeds: weights/noise {config['seed']}, world "
    f"{config['data_seed']}. Resolution "
    f"{config['resolution']} px; VAE latent scaling factor {card['vae_scaling_factor']:.5f}. "
    "The UNet and the text encoder are trained jointly (the VAE first, then frozen).",
    "",
    "## Measured quality",
    "",
  ]
  quality = card.get("quality") or {}
  if quality:
    lines += quality_markdown(quality)
  else:
    lines.append("Not measured yet: `python -m hdb_jax.world quality --model=DIR` adds it.")
  if card.get("recipe"):
    lines += ["", "## The recipe, by measurement", "", card["recipe"].strip()]
  lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
  for name, entry in card["files"].items():
    lines.append(f"| `{name}` | {entry['bytes']:,} | `{entry['sha256']}` |")
  return "\n".join(lines) + "\n"
