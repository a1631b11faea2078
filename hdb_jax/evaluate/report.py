"""The evaluation report: one self-contained HTML page over results.json and the PNGs beside it.

Sections: a summary (methods x metric means with their 95% intervals over identities, and the
personalization seconds per identity), a table per method (identities x metrics), and per identity
an image grid (rows: prompts, columns: methods, each cell the samples with their scores).
The statistics the world's tables add over method entries are hdb_jax/evaluate/tables.py's.
"""

import html
from typing import Any

import numpy as np

from hdb_jax.evaluate.metrics import METRIC_NAMES

STYLE = """body{font-family:sans-serif;margin:1.5em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}
td.l,th.l{text-align:left}img{width:128px;height:128px;margin:1px;image-rendering:auto}
.s{font-size:80%;color:#555}"""


def _metrics(results: dict[str, Any]) -> list[str]:
  return list(results["metrics"]) + (["face_found"] if "face_rec" in results["metrics"] else [])


def _name(metric: str) -> str:
  return METRIC_NAMES.get(metric, "face found" if metric == "face_found" else metric)


def _number(value: Any) -> str:
  return "-" if value is None else f"{value:.3f}"


def _with_ci(method: dict[str, Any], metric: str) -> str:
  """'0.512 [0.481, 0.543]': the mean and its 95% interval (just the mean in older results)."""
  ci = method.get("ci95", {}).get(metric)
  mean = _number(method["means"].get(metric))
  return mean if ci is None else f"{mean} [{_number(ci[0])}, {_number(ci[1])}]"


def seconds_per_identity(method: dict[str, Any], identities: int) -> tuple[float, float]:
  """(personalization seconds per identity with compiling, without: prediction + finetune); nan
  for an entry that personalizes nothing (render_ceiling's: seconds_per_identity None)."""
  if "seconds_per_identity" in method and method["seconds_per_identity"] is None:
    return float("nan"), float("nan")
  timings = method["timings_s"]
  without = (timings.get("predict_s", 0.0) + timings.get("finetune_s", 0.0)) / identities
  every = sum(v for k, v in timings.items() if k not in ("sampling_s", "scoring_s")) / identities
  return method.get("seconds_per_identity", every), without


def html_table(header: list[str], rows: list[list[str]]) -> str:
  head = "".join(
    f"<th{' class=l' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(header)
  )
  body = "".join(
    "<tr>"
    + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(row))
    + "</tr>"
    for row in rows
  )
  return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: str, title: str) -> str:
  return f'<img src="{html.escape(path)}" title="{html.escape(title)}" alt="{html.escape(title)}">'


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
  """Header and rows (plain text) of the methods x metric means [95% interval] table."""
  keys = _metrics(results)
  header = (
    ["method"]
    + [_name(k) for k in keys]
    + ["finetune steps", "s/identity", "s/identity without compiling"]
  )
  rows = []
  for name, method in results["methods"].items():
    every, without = seconds_per_identity(method, len(results["identities"]))
    rows.append(
      [name]
      + [_with_ci(method, k) for k in keys]
      + [str(method["finetune_steps"]), f"{every:.2f}", f"{without:.2f}"]
    )
  return header, rows


def method_rows(
  results: dict[str, Any],
  rows: list[tuple[str, str]],
  metrics: list[str],
) -> tuple[list[str], list[list[str]]]:
  """Header and plain-text rows of chosen methods: rows (label, method name in results) x metrics
  (mean [95% interval]), finetune steps and personalization seconds per identity."""
  header = ["method"] + [_name(k) for k in metrics] + ["finetune steps", "s/identity"]
  cells = []
  for label, name in rows:
    method = results["methods"][name]
    every, _ = seconds_per_identity(method, len(results["identities"]))
    steps = method["finetune_steps"]
    cells.append(
      [label]
      + [_with_ci(method, k) for k in metrics]
      + ["-" if steps is None else str(steps), "-" if np.isnan(every) else f"{every:.2f}"]
    )
  return header, cells


def markdown_table(
  results: dict[str, Any],
  rows: list[tuple[str, str]],
  metrics: list[str],
) -> str:
  """method_rows as a markdown table."""
  header, cells = method_rows(results, rows, metrics)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def summary_table(results: dict[str, Any]) -> str:
  """The summary as aligned plain text, for the terminal."""
  header, rows = summary_rows(results)
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  return "\n".join(
    "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    for r in [header] + rows
  )


def render(results: dict[str, Any]) -> str:
  """The report page; image paths are those in results (relative to the page)."""
  keys = _metrics(results)
  header, rows = summary_rows(results)
  parts = [
    f"<!doctype html><html><head><meta charset=utf-8><title>hdb_jax evaluation</title>"
    f"<style>{STYLE}</style></head><body><h1>Evaluation of "
    f"{html.escape(str(results['base_model']))}</h1>",
    f"<p class=s>{len(results['identities'])} identities, {len(results['prompts'])} prompts, "
    f"{results['sampling']['num_samples']} samples each ({results['sampling']['steps']} "
    f"{html.escape(results['sampling']['sampler'])} steps, guidance "
    f"{results['sampling']['guidance']}). "
    f"CLIP: {html.escape(str(results['models']['clip']))}; DINO: "
    f"{html.escape(str(results['models']['dino']))}; "
    f"faces: {html.escape(str(results['models']['face']))}; world judge: "
    f"{html.escape(str(results['models'].get('judge')))}; world recognizer: "
    f"{html.escape(str(results['models'].get('recognizer')))}. Means [95% interval: bootstrap over "
    "identities; a t-interval over images for one identity]. s/identity: personalization time "
    "per identity (hypernetwork prediction, finetune and their compiling); without compiling: "
    "prediction + finetune.</p>",
    "<h2>Summary</h2>",
    html_table(header, [[html.escape(c) for c in r] for r in rows]),
  ]
  for name, method in results["methods"].items():
    parts.append(f"<h2>{html.escape(name)}</h2><p class=s>{html.escape(method['description'])}</p>")
    identity_rows = [
      [html.escape(ident)] + [_number(entry["means"].get(k)) for k in keys]
      for ident, entry in method["identities"].items()
    ]
    identity_rows.append(["<b>mean</b>"] + [f"<b>{_with_ci(method, k)}</b>" for k in keys])
    parts.append(html_table(["identity"] + [_name(k) for k in keys], identity_rows))
  parts.append("<h2>Images</h2>")
  for ident, info in results["identities"].items():
    parts.append(
      f"<h3>{html.escape(ident)}</h3><p>{_image(info['image'], 'reference: ' + ident)}</p>"
    )
    grid_rows = []
    for prompt in results["prompts"]:
      cells = [html.escape(prompt)]
      for name, method in results["methods"].items():
        entry = method["identities"][ident]["prompts"][prompt]
        images = "".join(_image(p, f"{name}: {prompt}") for p in entry["images"])
        scores = ", ".join(
          f"{_name(k)} {_number(entry['means'].get(k))}" for k in results["metrics"]
        )
        cells.append(f"{images}<div class=s>{scores}</div>")
      grid_rows.append(cells)
    parts.append(html_table(["prompt"] + list(results["methods"]), grid_rows))
  parts.append("</body></html>")
  return "\n".join(parts)
