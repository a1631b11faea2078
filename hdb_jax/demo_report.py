"""The demo's report.html: what each phase did, its loss curves (inline SVG), images, sizes and timings."""

import html
import os
from typing import Any, Sequence

from hdb_jax.evaluation import report

NOTE = ("The tiny model has random weights (nothing can be downloaded offline), so every image it draws is "
        "noise. The numbers are real: losses, the held-out comparison, file sizes and timings.")


def svg_plot(series: dict[str, Sequence[float]], title: str, width: int = 420, height: int = 180) -> str:
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
    points = " ".join(f"{pad + i * (width - 2 * pad) / max(longest - 1, 1):.1f},"
                      f"{height - pad - (y - low) / span * (height - 2 * pad):.1f}" for i, y in enumerate(ys))
    color = colors[k % len(colors)]
    lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
                 f'<text x="{width - pad}" y="{14 + 14 * k}" fill="{color}" font-size="11" '
                 f'text-anchor="end">{html.escape(name)}</text>')
  axis = (f'<text x="2" y="{pad}" font-size="10">{high:.3g}</text>'
          f'<text x="2" y="{height - pad}" font-size="10">{low:.3g}</text>'
          f'<text x="{pad}" y="{height - 8}" font-size="10">step 1 .. {longest}</text>')
  return (f'<figure><svg width="{width}" height="{height}" style="border:1px solid #ddd">{"".join(lines)}{axis}'
          f'</svg><figcaption>{html.escape(title)}</figcaption></figure>')


def render(title: str, sections: list[tuple[str, str]]) -> str:
  """A page of (heading, inner HTML) sections in the evaluation report's style."""
  body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections)
  return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
          f"<style>{report.STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
          f"<p><b>{html.escape(NOTE)}</b></p>{body}</body></html>")


def table(header: list[str], rows: list[list[Any]]) -> str:
  return report.html_table(header, [[html.escape(str(c)) for c in row] for row in rows])


def image(path: str, page_dir: str, title: str) -> str:
  """An <img> of a file, relative to the page's directory (shown at its own size)."""
  rel = os.path.relpath(path, page_dir)
  return f'<img src="{html.escape(rel)}" title="{html.escape(title)}" style="width:auto;height:auto;max-width:100%">'
