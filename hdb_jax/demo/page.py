"""The demo's report.html (demo/page): what each phase did, its loss curves (inline SVG), images,
sizes and timings."""

import html
import json
import os
from typing import Any, Sequence

import numpy as np

from hdb_jax import adapters, models
from hdb_jax.evaluate import report
from hdb_jax.io.files import write_text_atomic
from hdb_jax.runtime.metrics_log import read_metrics

NOTE = (
  "The tiny model has random weights (nothing can be downloaded offline), so every image it draws "
  "is "
  "noise. The numbers are real: losses, the held-out comparison, file sizes and timings."
)


def svg_plot(
  series: dict[str, Sequence[float]], title: str, width: int = 420, height: int = 180
) -> str:
  """A line chart of named series over their index (step), as inline SVG with a legend."""
  colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
  values = [v for s in series.values() for v in s]
  if not values:
    return ""
  low, high = min(values), max(values)
  span, longest = (high - low) or 1.0, max(len(s) for s in series.values())
  pad = 30
  lines = []
  for k, (name, ys) in enumerate(series.items()):
    points = " ".join(
      f"{pad + i * (width - 2 * pad) / max(longest - 1, 1):.1f},"
      f"{height - pad - (y - low) / span * (height - 2 * pad):.1f}"
      for i, y in enumerate(ys)
    )
    color = colors[k % len(colors)]
    lines.append(
      f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
      f'<text x="{width - pad}" y="{14 + 14 * k}" fill="{color}" font-size="11" '
      f'text-anchor="end">{html.escape(name)}</text>'
    )
  axis = (
    f'<text x="2" y="{pad}" font-size="10">{high:.3g}</text>'
    f'<text x="2" y="{height - pad}" font-size="10">{low:.3g}</text>'
    f'<text x="{pad}" y="{height - 8}" font-size="10">step 1 .. {longest}</text>'
  )
  return (
    f'<figure><svg width="{width}" height="{height}" style="border:1px solid '
    f'#ddd">{"".join(lines)}{axis}'
    f"</svg><figcaption>{html.escape(title)}</figcaption></figure>"
  )


def render_page(title: str, sections: list[tuple[str, str]]) -> str:
  """A page of (heading, inner HTML) sections in the evaluation report's style."""
  body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections)
  return (
    f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
    f"<style>{report.STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    f"<p><b>{html.escape(NOTE)}</b></p>{body}</body></html>"
  )


def table(header: list[str], rows: list[list[Any]]) -> str:
  return report.html_table(header, [[html.escape(str(c)) for c in row] for row in rows])


def image(path: str, page_dir: str, title: str) -> str:
  """An <img> of a file, relative to the page's directory (shown at its own size)."""
  rel = os.path.relpath(path, page_dir)
  style = "width:auto;height:auto;max-width:100%"
  return f'<img src="{html.escape(rel)}" title="{html.escape(title)}" style="{style}">'


def write_report(workdir: str, done: dict, timings: dict[str, float]) -> str:
  """WORKDIR/report.html from the phases' outputs."""
  dataset, sections = done["dataset"], []
  losses = dataset.final_losses()
  sections.append(
    (
      "Phase 0: one LiDB per training face",
      table(
        ["identity", "final diffusion loss"], [[k, f"{v:.4f}"] for k, v in sorted(losses.items())]
      ),
    )
  )
  metrics = read_metrics(done["hyper_dir"])
  train_rows = [m for m in metrics if "loss" in m]
  evals = [m for m in metrics if "eval_weight_loss" in m]
  curves = svg_plot(
    {k: [m[k] for m in train_rows] for k in ("loss", "diffusion_loss", "weight_loss")},
    "Phase 1 training losses (logged every 10 steps)",
  )
  held = "".join(
    f"<p>held-out face {done['held_out']}: weight loss {m['eval_weight_loss']:.4f}, diffusion loss "
    f"{m['eval_diffusion_loss']:.4f} (step {m['step']})</p>"
    for m in evals
  )
  sections.append(("Phase 1: the hypernetwork", curves + held))
  rows, inner = [], ""
  for photo, out in zip(done["photos"], done["outputs"]):
    record = json.load(open(os.path.join(out, "record.json"), encoding="utf-8"))
    curve = np.asarray(record["losses"])
    inner += svg_plot(
      {"finetune loss": curve.tolist()}, f"{os.path.basename(photo)}: rank-relaxed finetune"
    )
    inner += image(photo, workdir, "photo") + image(
      os.path.join(out, "samples", "grid.png"), workdir, "samples"
    )
    lora = os.path.join(out, "export", "diffusers", "pytorch_lora_weights.safetensors")
    rows.append(
      [
        os.path.basename(photo),
        f"{curve[0]:.4f} -> {curve[-1]:.4f}",
        f"{record['identity_bytes']:,}",
        f"{os.path.getsize(lora):,}",
      ]
    )
  sections.append(
    (
      "Phase 2: personalized photos",
      table(
        ["photo", "finetune loss first -> last", "identity file (bytes)", "diffusers LoRA (bytes)"],
        rows,
      )
      + inner,
    )
  )
  if done["evaluation"] is not None:
    header, summary = report.summary_rows(done["evaluation"])
    sections.append(
      (
        "Evaluation (tiny random CLIP/DINO: scores show the plumbing, not quality)",
        table(header, summary)
        + '<p><a href="evaluation/report.html">full evaluation report</a></p>',
      )
    )
  export = os.path.join(workdir, "hypernet_export", "hypernet.safetensors")
  count = adapters.count_from_configs(models.configs.SD15_UNET, models.configs.SD15_TEXT_ENCODER)
  sections.append(
    (
      "Sizes",
      table(["what", "bytes"], [["hypernetwork export (tiny)", f"{os.path.getsize(export):,}"]])
      + f"<pre>Stable Diffusion 1.5, counted from its config:\n{count.table()}</pre>",
    )
  )
  sections.append(
    (
      "Timings (2-core CPU: mostly compiling)",
      table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]),
    )
  )
  path = os.path.join(workdir, "report.html")
  write_text_atomic(path, render_page("hdb_jax demo: every phase on the tiny model", sections))
  return path
