"""The offline demo end to end on the world model: every stage runs, every artefact it reports
exists and loads, and the scores its page shows are the evaluation's own (results.json).

The demo runs here with few steps and prompts, and with its own short Phase 1 as the hypernetwork
(--hypernet=phase1): the code path is the demo's; the numbers mean little at these sizes.
"""

import html
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from hdb_jax import models
from hdb_jax.config import phases
from hdb_jax.demo import page as demo_page
from hdb_jax.demo.run import DEMO_PROMPTS, merged_length
from hdb_jax.evaluate.prompts import WORLD
from hdb_jax.formats import identity
from hdb_jax.formats.weights_dataset import open_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPTS = ["a {token} face", "a {token} face wearing a red hat"]
METHODS = ["base", "only_hyper", "full"]


def cells(markup: str) -> list[list[str]]:
  """The <td> contents of each table row in `markup` (header rows, all <th>, left out)."""
  rows = re.findall(r"<tr>(.*?)</tr>", markup, re.S)
  return [found for row in rows if (found := re.findall(r"<td[^>]*>(.*?)</td>", row, re.S))]


def numbers(text: str) -> list[float]:
  return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def method_of(label: str) -> str:
  """'Only Hyper (only_hyper)' -> 'only_hyper'."""
  return re.search(r"\((\w+)\)$", label).group(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("demo")
  cmd = [
    sys.executable,
    "-m",
    "hdb_jax.demo",
    f"--workdir={workdir}",
    "--hypernet=phase1",
    "--identities=3",
    "--preoptimize_steps=4",
    "--hyper_steps=4",
    "--hyper_batch=2",
    "--faces=2",
    "--finetune_steps=3",
    "--sample_steps=2",
    f"--prompts={'|'.join(PROMPTS)}",
    f"--methods={','.join(METHODS)}",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "report:" in out.stdout and "compiling" in out.stdout
  return workdir


def test_demo_page_shows_every_stage_and_its_images_load(demo):
  page = (demo / "report.html").read_text()
  for heading in ("world faces", "astronaut", "Phase 0", "Phase 1", "Phase 2", "Sizes", "Timings"):
    assert heading in page
  assert "out of the world's domain" in html.unescape(page)
  assert page.count("<polyline") == 2 + 3  # Phase 1's two curves, one finetune curve per photo
  sources = re.findall(r'src="([^"]+)"', page)
  # each world face: its reference and an image per method and prompt; the astronaut and samples
  assert len(sources) == 2 * (1 + len(METHODS) * len(PROMPTS)) + 1 + len(PROMPTS)
  for src in sources:
    Image.open(demo / src).verify()  # every image the page shows is a real image file


def test_demo_page_scores_are_the_evaluations(demo):
  page = (demo / "report.html").read_text()
  results = json.loads((demo / "evaluation" / "results.json").read_text())
  assert list(results["methods"]) == METHODS and len(results["identities"]) == 2
  summary = re.search(r'<div id="summary">(.*?)</div>', page, re.S).group(1)
  shown = {method_of(row[0]): row for row in cells(summary)}
  assert sorted(shown) == sorted(METHODS)
  # the judge's score first, then the recognizer's
  world = ["world_judge", "world_id", "world_prompt"]
  assert [m for m in results["metrics"] if m.startswith("world")] == world
  for name, row in shown.items():
    method = results["methods"][name]
    for cell, metric in zip(row[1:4], world, strict=True):
      expected = [method["means"][metric], *method["ci95"][metric]]  # mean [low, high]
      np.testing.assert_allclose(numbers(cell), expected, atol=5e-4)
  # each face's grid: per method and prompt, the image and the scores of results.json
  for face in results["identities"]:
    grid = page.split(f"<h3>{face}</h3>")[1].split("</table>")[0]
    rows = cells(grid)
    assert [method_of(row[0]) for row in rows] == METHODS
    for row in rows:
      for cell, prompt in zip(row[1:], results["prompts"], strict=True):
        entry = results["methods"][method_of(row[0])]["identities"][face]["prompts"][prompt]
        assert re.findall(r'src="([^"]+)"', cell) == [f"evaluation/{p}" for p in entry["images"]]
        expected = [entry["means"][metric] for metric in world]
        np.testing.assert_allclose(numbers(cell), expected, atol=5e-4)


def test_demo_identities_and_exports_load(demo):
  assert len(open_dataset(str(demo / "phase0" / "weights")).identity_ids()) == 3
  world = models.load_model("world")
  config = phases.personalization_config("world")
  for name in ("world_1000000", "world_1000001", "astronaut"):
    out_dir = demo / "personalized" / name
    ident = identity.load(str(out_dir / "identity.safetensors"), base=world)
    assert ident.meta.extra["method"] == "hyper+finetune" and ident.lidb
    assert ident.meta.extra["relaxation"] == config.relaxation
    if config.relaxation == "lidb":  # the compact relaxation: one LiDB of rank 1 + r'
      assert ident.meta.lidb.rank == 1 + config.lora_rank and ident.meta.lora_rank == 0
    else:  # the rank-relaxed LoRA beside the prediction
      assert ident.meta.lora_rank == config.lora_rank
    lora = load_file(str(out_dir / "export" / "diffusers" / "pytorch_lora_weights.safetensors"))
    assert lora and all(np.isfinite(v).all() for v in lora.values())
    assert len(json.loads((out_dir / "record.json").read_text())["losses"]) == 3
  card = json.loads((demo / "hypernet_export" / "hypernet.json").read_text())
  assert card["step"] == 4 and load_file(str(demo / "hypernet_export" / "hypernet.safetensors"))


def fake_results(metrics: list[str]) -> dict:
  """A results.json of one method, one identity and one prompt, with these metrics."""
  values = {m: 0.1 * (k + 1) for k, m in enumerate(metrics)}
  entry = {"means": values, "images": ["images/full/a/00_a_0.png"]}
  return {
    "metrics": metrics,
    "identities": {"a": {"image": "images/reference/a.png"}},
    "prompts": ["a {token} face"],
    "sampling": {"num_samples": 1, "steps": 2, "guidance": 7.5},
    "methods": {
      "full": {
        "means": values,
        "ci95": {m: [v - 0.01, v + 0.01] for m, v in values.items()},
        "finetune_steps": 3,
        "seconds_per_identity": 1.0,
        "timings_s": {},
        "identities": {"a": {"means": values, "prompts": {"a {token} face": entry}}},
      }
    },
  }


def test_demo_page_shows_the_judge_first_and_only_what_was_scored(tmp_path):
  done = SimpleNamespace(settings=SimpleNamespace(hypernet=str(tmp_path)), hypernet=str(tmp_path))
  judged = fake_results(["clip_t", "world_judge", "world_id", "world_prompt"])
  header = re.findall(r"<th[^>]*>(.*?)</th>", demo_page.summary(judged, done))
  assert header[1:4] == ["World-judge", "World-ID", "World-prompt"]
  [row] = cells(demo_page.summary(judged, done))
  assert numbers(row[1]) == pytest.approx([0.2, 0.19, 0.21])  # World-judge [interval]
  grid = cells(demo_page.face_grid(judged, "a", str(tmp_path)))[0][1]
  assert re.findall(r"(World-\w+) (-?\d\.\d+)", grid) == [
    ("World-judge", "0.200"),
    ("World-ID", "0.300"),
    ("World-prompt", "0.400"),
  ]
  # an evaluation without the judge (older results) shows the recognizer's two
  unjudged = fake_results(["world_id", "world_prompt"])
  header = re.findall(r"<th[^>]*>(.*?)</th>", demo_page.summary(unjudged, done))
  assert "World-judge" not in header and header[1:3] == ["World-ID", "World-prompt"]


def test_compile_time_counts_overlapping_spans_once():
  assert merged_length([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]) == pytest.approx(4.0)
  assert merged_length([]) == 0.0


def test_demo_prompts_are_world_prompts():
  assert set(DEMO_PROMPTS) <= set(WORLD)  # in the world's caption grammar: World-prompt reads them
