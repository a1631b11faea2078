"""The demo's report.html (demo/page): the world faces' images and scores per method (from the
evaluation's results.json), the astronaut, each stage's loss curves (inline SVG), sizes and
timings."""

import html
import json
import os
from typing import Any, Sequence

import numpy as np

from hdb_jax import adapters, models
from hdb_jax.demo.run import PHASE1, DemoRun, StageTimer
from hdb_jax.evaluate import report
from hdb_jax.evaluate.metrics import JUDGE_METRICS, METRIC_NAMES, WORLD_METRICS
from hdb_jax.formats.hypernet_export import is_exported
from hdb_jax.formats.hypernet_loading import WORLD, WORLD_HYPERNET_DIR
from hdb_jax.io.files import write_text_atomic
from hdb_jax.io.images import slug
from hdb_jax.runtime.compilation_cache import default_cache_dir
from hdb_jax.runtime.metrics_log import read_metrics
from hdb_jax.runtime.overview import hardware

TITLE = "hdb_jax demo: HyperDreamBooth on the world model"
INTRO = (
  "The world model is a small Stable Diffusion (64 px, a 4M-parameter UNet) this project trained "
  "on a procedural world: faces with hats, glasses, expressions, backgrounds and styles that the "
  "prompt names. Networks trained on the world's ground truth score every image: World-judge, "
  "the cosine similarity of the judge's identity embeddings of the image and of the reference "
  "photo (does it show the same person? The judge is trained apart from the network the "
  "hypernetwork reads and is used for nothing but scoring), then the recognizer's World-ID (the "
  "same question, by another network) and World-prompt (the fraction of the prompt's 5 "
  "attributes: hat, glasses, expression, background, style, it reads back from the image). The "
  "world faces here are held-out identities no model was trained on."
)
OUT_OF_DOMAIN = (
  "This photo is out of the world's domain: the world model and its hypernetwork know only the "
  "world's procedural 64 px faces, so what comes back is a world face, not her likeness. She is "
  "personalized (in the same batch as the world faces) to show that any photo runs through the "
  "pipeline, not how well a real face is kept; the recognizer knows only world faces, so she is "
  "not in the evaluation."
)
# the evaluation's methods as the paper's Table 3 names them
METHOD_LABELS = {
  "base": "base model (no identity)",
  "no_hyper": "No Hyper",
  "only_hyper": "Only Hyper",
  "full": "Hyper + fast finetune",
  "k1": "k=1 + fast finetune",
}
EXTRA_STYLE = (
  "th{font-size:80%;font-weight:normal;max-width:128px}svg{margin-right:1em}"
  ".row{display:flex;align-items:flex-start;gap:1em}figure{margin:0}"
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


def render_page(title: str, intro: str, sections: list[tuple[str, str]]) -> str:
  """A page of (heading, inner HTML) sections in the evaluation report's style."""
  body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections)
  return (
    f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
    f"<style>{report.STYLE}{EXTRA_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    f"<p>{intro}</p>{body}</body></html>"
  )


def table(header: list[str], rows: list[list[Any]]) -> str:
  """An HTML table of plain-text cells."""
  return report.html_table(header, [[html.escape(str(c)) for c in row] for row in rows])


def image(path: str, page_dir: str, title: str) -> str:
  """An <img> of a file, relative to the page's directory (shown 128 px square: 2x the world's)."""
  rel = os.path.relpath(path, page_dir)
  return f'<img src="{html.escape(rel)}" title="{html.escape(title)}" alt="{html.escape(title)}">'


def prompt_label(prompt: str) -> str:
  return prompt.replace("{token}", "[V]")


def method_label(name: str) -> str:
  """'Only Hyper (only_hyper)': the paper's name and the evaluation's."""
  return f"{METHOD_LABELS.get(name, name)} ({name})"


def hypernet_description(done: DemoRun) -> str:
  """Which hypernetwork Phase 2 used, in words (HTML)."""
  if done.settings.hypernet == PHASE1:
    shipped = "" if is_exported(WORLD_HYPERNET_DIR) else " (this installation has no shipped one)"
    return f"this run's short Phase 1 (hyper/), which has learnt little{shipped}"
  if done.settings.hypernet == WORLD:
    return "the shipped world hypernetwork (hdb_jax/assets/world-hypernet)"
  return html.escape(done.hypernet)


def world_metrics(results: dict[str, Any]) -> list[str]:
  """The world's scores an evaluation computed, the judge's first: World-judge (when it ran with
  a judge), World-ID, World-prompt."""
  return [m for m in JUDGE_METRICS + WORLD_METRICS if m in results["metrics"]]


def summary(results: dict[str, Any], done: DemoRun) -> str:
  """The small Table 3: World-judge (when present), World-ID and World-prompt means [95%
  interval] per method, as results.json has them."""
  header, rows = report.method_rows(
    results, [(method_label(name), name) for name in results["methods"]], world_metrics(results)
  )
  n = len(results["identities"])
  return (
    f'<div id="summary">{table(header, rows)}</div><p class=s>{n} held-out world faces x '
    f"{len(results['prompts'])} prompts x {results['sampling']['num_samples']} sample(s), "
    f"{results['sampling']['steps']} DDIM steps at guidance {results['sampling']['guidance']}. "
    "Means [95% interval: a bootstrap over faces, which with this few faces is rough]. "
    f"Hypernetwork: {hypernet_description(done)}. "
    "s/identity: personalization seconds per face, compiling included. The same numbers: "
    '<a href="evaluation/results.json">results.json</a>, <a href="evaluation/report.html">the '
    "evaluation's own report</a>.</p>"
  )


def face_grid(results: dict[str, Any], name: str, workdir: str) -> str:
  """One world face: its reference photo beside a methods x prompts table of the evaluation's
  images, each with its world scores (World-judge first, when present)."""
  evaluation = os.path.join(workdir, "evaluation")
  reference = image(os.path.join(evaluation, results["identities"][name]["image"]), workdir, name)
  rows = []
  for method_name, method in results["methods"].items():
    cells = [html.escape(method_label(method_name))]
    for prompt in results["prompts"]:
      entry = method["identities"][name]["prompts"][prompt]
      images = [
        image(os.path.join(evaluation, p), workdir, prompt_label(prompt)) for p in entry["images"]
      ]
      scores = "<br>".join(
        f"{METRIC_NAMES[k]} {entry['means'][k]:.3f}" for k in world_metrics(results)
      )
      cells.append("".join(images) + f"<div class=s>{scores}</div>")
    rows.append(cells)
  grid = report.html_table(["method"] + [prompt_label(p) for p in results["prompts"]], rows)
  return (
    f"<h3>{html.escape(name)}</h3><div class=row><figure>{reference}<figcaption>reference"
    f"</figcaption></figure>{grid}</div>"
  )


def samples_row(photo: str, out: str, prompts: list[str], workdir: str) -> str:
  """A photo (captioned with its name) beside its Phase 2 samples, one per prompt."""
  samples = [
    image(os.path.join(out, "samples", f"{slug(p)}_0.png"), workdir, prompt_label(p))
    for p in prompts
  ]
  grid = report.html_table([prompt_label(p) for p in prompts], [samples])
  name = os.path.splitext(os.path.basename(photo))[0]
  reference = image(photo, workdir, name)
  return f"<div class=row><figure>{reference}<figcaption>{name}</figcaption></figure>{grid}</div>"


def lora_file(out: str) -> str:
  """The diffusers (PEFT) LoRA a Phase 2 output directory holds."""
  return os.path.join(out, "export", "diffusers", "pytorch_lora_weights.safetensors")


def _record(out: str) -> dict[str, Any]:
  with open(os.path.join(out, "record.json"), encoding="utf-8") as f:
    return json.load(f)


def training_sections(done: DemoRun) -> list[tuple[str, str]]:
  """Phase 0's final losses, Phase 1's curves and held-out losses."""
  losses = done.dataset.final_losses()
  phase0 = table(
    ["identity", "final diffusion loss"], [[k, f"{v:.4f}"] for k, v in sorted(losses.items())]
  )
  metrics = read_metrics(done.hyper_dir)
  train_rows = [m for m in metrics if "loss" in m]
  logged = f"{len(train_rows)} logs over {done.settings.hyper_steps} steps"
  curves = "".join(
    svg_plot({key: [m[key] for m in train_rows]}, f"Phase 1 {name} ({logged})", width=320)
    for key, name in (("diffusion_loss", "diffusion loss"), ("weight_loss", "weight loss"))
  )
  held = "".join(
    f"<p>held-out face {html.escape(done.held_out)}: weight loss {m['eval_weight_loss']:.4f}, "
    f"diffusion loss {m['eval_diffusion_loss']:.4f} (step {m['step']})</p>"
    for m in metrics
    if "eval_weight_loss" in m
  )
  used = (
    "Phase 2 uses it below"
    if done.settings.hypernet == PHASE1
    else f"Phase 2 uses {hypernet_description(done)} instead"
  )
  steps = f"{done.settings.preoptimize_steps} steps, {len(losses)} faces in one batch"
  return [
    (f"Phase 0: one LiDB per world training face ({steps})", phase0),
    (
      f"Phase 1: the hypernetwork ({done.settings.hyper_steps} steps)",
      f"<p class=s>A short run to show training works; {used}.</p>"
      f"<div class=row>{curves}</div>{held}",
    ),
  ]


def phase2_section(done: DemoRun, workdir: str) -> str:
  """The finetune curves of every photo and the files each one produced."""
  rows, curves = [], {}
  window = max(1, done.settings.finetune_steps // 4)  # one step's loss is one noisy timestep
  for photo, out in zip(done.world_photos + [done.astronaut], done.outputs):
    record = _record(out)
    name = os.path.splitext(os.path.basename(photo))[0]
    curve = np.asarray(record["losses"])
    curves[name] = curve.tolist()
    rows.append(
      [
        name,
        f"{curve[:window].mean():.4f} -> {curve[-window:].mean():.4f}" if len(curve) else "-",
        f"{record['identity_bytes']:,}",
        f"{os.path.getsize(lora_file(out)):,}",
        os.path.relpath(out, workdir),
      ]
    )
  header = ["photo", f"finetune loss: first {window} steps -> last {window}"]
  header += ["identity file (bytes)", "diffusers LoRA (bytes)", "outputs"]
  return (
    f"<p class=s>Hypernetwork: {hypernet_description(done)}; {done.settings.finetune_steps} "
    "rank-relaxed finetune steps; every photo in one batch.</p>"
    + svg_plot(curves, "rank-relaxed finetune loss per photo")
    + table(header, rows)
  )


def sizes_section(done: DemoRun) -> str:
  rows = [["this run's Phase 1 hypernetwork, exported", f"{os.path.getsize(done.phase1_export):,}"]]
  if done.hypernet_export and done.hypernet_export != done.phase1_export:
    rows.append(
      [
        f"Phase 2's hypernetwork ({done.settings.hypernet})",
        f"{os.path.getsize(done.hypernet_export):,}",
      ]
    )
  record = _record(done.outputs[0])
  what = {"lidb": "one LiDB of rank 1 + r'", "lora": "LiDB + rank-r' LoRA"}[
    record["config"]["relaxation"]
  ]
  rows.append([f"one identity file ({what}, fp32)", f"{record['identity_bytes']:,}"])
  rows.append(["its diffusers LoRA export", f"{os.path.getsize(lora_file(done.outputs[0])):,}"])
  count = adapters.count_from_configs(models.configs.SD15_UNET, models.configs.SD15_TEXT_ENCODER)
  return table(["what", "bytes"], rows) + (
    "<pre>The same adapters on Stable Diffusion 1.5, counted from its config:\n"
    f"{count.table()}</pre>"
  )


def timings_section(timer: StageTimer) -> str:
  rows = [[name, f"{s:.1f}", f"{timer.compiling[name]:.1f}"] for name, s in timer.seconds.items()]
  total, compiling = sum(timer.seconds.values()), sum(timer.compiling.values())
  rows.append(["total", f"{total:.1f}", f"{compiling:.1f} ({compiling / max(total, 1e-9):.0%})"])
  return table(["stage", "seconds", "of which compiling"], rows) + (
    "<p class=s>Compiling: JAX tracing, lowering and XLA compiling, or loading a compiled program "
    f"from the persistent cache ({html.escape(default_cache_dir())}), as JAX's own compile events "
    "time them. A rerun finds every program in the cache.</p>"
  )


def write_report(workdir: str, done: DemoRun, timer: StageTimer) -> str:
  """WORKDIR/report.html from the stages' outputs."""
  sections = []
  results = done.evaluation
  if results is not None:
    faces = "".join(face_grid(results, name, workdir) for name in results["identities"])
    sections.append(("Held-out world faces, evaluated", summary(results, done) + faces))
  else:
    faces = "".join(
      samples_row(photo, out, done.prompts, workdir)
      for photo, out in zip(done.world_photos, done.outputs)
    )
    sections.append(("Held-out world faces (Hyper + fast finetune)", faces))
  sections.append(
    (
      "Out of the world's domain: the astronaut",
      f"<p><b>{html.escape(OUT_OF_DOMAIN)}</b></p>"
      + samples_row(done.astronaut, done.outputs[-1], done.prompts, workdir),
    )
  )
  sections += training_sections(done)
  sections.append(("Phase 2: personalization", phase2_section(done, workdir)))
  sections.append(("Sizes", sizes_section(done)))
  sections.append((f"Timings ({hardware()})", timings_section(timer)))
  path = os.path.join(workdir, "report.html")
  write_text_atomic(path, render_page(TITLE, html.escape(INTRO), sections))
  return path
