"""The offline demo end to end: every phase runs and every artefact it reports exists and loads.

The demo runs on a shallower UNet here (configs.MICRO_UNET, passed with --pretrained) with few
steps: the code path is the demo's own; only compile time, which would dominate on CPU, shrinks.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import load_file

from hdb_jax import models
from hdb_jax.formats import identity
from hdb_jax.formats.weights_dataset import open_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_every_phase_and_reports(micro_dir, tmp_path):
  micro = micro_dir
  workdir = tmp_path / "demo"
  cmd = [
    sys.executable,
    "-m",
    "hdb_jax.demo",
    f"--workdir={workdir}",
    f"--pretrained={micro}",
    "--identities=3",
    "--hyper_steps=10",
    "--finetune_steps=5",
    "--methods=only_hyper",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "images are noise" in out.stdout and "report:" in out.stdout

  page = (workdir / "report.html").read_text()
  for heading in ("Phase 0", "Phase 1", "Phase 2", "Evaluation", "Sizes", "Timings"):
    assert heading in page
  assert page.count("<polyline") >= 3 + 2  # three Phase 1 curves, one finetune curve per photo
  sources = re.findall(r'src="([^"]+)"', page)
  assert len(sources) >= 4  # each photo and its sample grid
  for src in sources:
    Image.open(workdir / src).verify()  # every image the page shows is a real image file

  assert len(open_dataset(str(workdir / "phase0" / "weights")).identity_ids()) == 3
  sd = models.load_stable_diffusion(micro)
  for name in ("astronaut", "held_out_face"):
    out_dir = workdir / "personalized" / name
    ident = identity.load(str(out_dir / "identity.safetensors"), base=sd)
    assert ident.meta.extra["method"] == "hyper+finetune" and ident.lidb and ident.lora
    lora = load_file(str(out_dir / "export" / "diffusers" / "pytorch_lora_weights.safetensors"))
    assert lora and all(np.isfinite(v).all() for v in lora.values())
    assert len(json.loads((out_dir / "record.json").read_text())["losses"]) == 5
  card = json.loads((workdir / "hypernet_export" / "hypernet.json").read_text())
  assert card["step"] == 10 and load_file(str(workdir / "hypernet_export" / "hypernet.safetensors"))
  results = json.loads((workdir / "evaluation" / "results.json").read_text())
  # The other methods train: test_evaluate runs them; here the evaluation's wiring is what is
  # checked.
  assert set(results["methods"]) == {"only_hyper"} and results["methods"]["only_hyper"]["means"]
