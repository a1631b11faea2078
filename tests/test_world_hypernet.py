"""The shipped world hypernetwork (hdb_jax/assets/world-hypernet): its files are its card's, and it
works, by the judge (a network trained apart from the hypernetwork's encoder and never used to
select anything): one photo of a world face that no model ever saw becomes an identity whose images
the judge finds more like that face than the base model's, while they still show what the prompt
asks (World-prompt); and the fast finetune adds identity over the prediction alone (paired).

Through the evaluation itself (hdb_jax.evaluate.loop.evaluate: the world config, DDIM 25, guidance
7.5) on IDENTITIES test-split identities x the 12 world prompts x 1 sample, noise drawn per
identity and paired across methods and runs: the base model, the prediction alone, the shipped
default (prediction + 80 steps of the LiDB relaxation, r' 4, lr 1e-2) and the paper's LoRA
relaxation at its tuned setting (r' 8, lr 3e-3, 80 steps). ~3 min on 2 cores. The full measurement
(32 identities x 12 prompts x 2 samples, with intervals) is in the card and the README.

The thresholds come from the README's test tables, restricted to 1 sample (per-identity SD over
32 identities, 12 prompts; gains over the base model by the judge): prediction alone 0.24 (SD
0.11), the default 0.29 (SD 0.13), the LoRA relaxation 0.38 (SD 0.12); the LoRA relaxation over the
prediction alone, paired, 0.135 (SD 0.103); the default over the prediction alone only 0.05 (SD
0.12), which this many identities cannot tell from 0 (the README says so). World-prompt per
identity 0.90-0.94 (SD 0.03-0.04).
"""

import json
import os

import numpy as np
import pytest

from hdb_jax.config.phases import evaluate_config
from hdb_jax.evaluate.loop import evaluate
from hdb_jax.formats.hypernet_loading import WORLD_HYPERNET_DIR
from hdb_jax.formats.hypernet_release import RELEASE
from hdb_jax.io.files import file_sha256
from hdb_jax.world.truth.sampling import split_identities
from hdb_jax.world.truth.source import save_photos

IDENTITIES = 10
METRICS = ("world_judge", "world_id", "world_prompt")
# the paper's relaxation at the setting validation chose for it (README)
LORA_RELAXATION = {"relaxation": "lora", "lora_rank": 8, "optim.learning_rate": 3e-3}


@pytest.fixture(scope="module")
def per_identity(tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
  """{method: {metric: [IDENTITIES]}}: each identity's mean over the prompts; methods base,
  only_hyper, full (the shipped default) and full_lora."""
  root = tmp_path_factory.mktemp("world_hypernet")
  paths = save_photos(str(root / "photos"), split_identities("test", IDENTITIES))

  def run(name: str, methods: str, **overrides) -> dict:
    config = evaluate_config("world")
    config.images, config.hypernet = os.path.dirname(paths[0]), "world"
    config.methods, config.num_samples = methods, 1
    config.update_from_flattened_dict(overrides)
    return evaluate(config, str(root / name))

  default = run("default", "base,only_hyper,full")
  lora = run("lora", "full", **LORA_RELAXATION)
  entries = {**default["methods"], "full_lora": lora["methods"]["full"]}
  names = list(default["identities"])
  return {
    method: {
      metric: np.asarray([entry["identities"][n]["means"][metric] for n in names])
      for metric in METRICS
    }
    for method, entry in entries.items()
  }


def test_the_shipped_files_are_the_cards():
  with open(os.path.join(WORLD_HYPERNET_DIR, RELEASE), encoding="utf-8") as f:
    release = json.load(f)
  for name, entry in release["files"].items():
    path = os.path.join(WORLD_HYPERNET_DIR, name)
    assert os.path.getsize(path) == entry["bytes"] and file_sha256(path) == entry["sha256"], name
  # measured on held-out identities by the judge (the README's tables), not an empty card
  methods = release["quality"]["methods"]
  assert methods["full/lidb"]["means"]["world_judge"] > methods["base"]["means"]["world_judge"]


@pytest.mark.parametrize("method", ["only_hyper", "full", "full_lora"])
def test_a_held_out_face_personalized_looks_like_itself_to_the_judge(per_identity, method):
  """Gain over the base model by the judge, paired per identity, mean of 10 identities: expected
  0.24-0.38 with SE <= 0.041 (SD / sqrt(10)), so 0.1 sits >= 3.4 SE below each, and a method that
  adds no identity (gain 0) would need a +2.4 SE draw. Most faces gain, not a few (measured: 97-100%
  of 32). World-prompt: a mean over 10 identities of 0.85 sits >= 4 SE below the measured 0.90-0.94;
  a finetune that overwrites the prompt reads ~0.5 (lr 3e-2)."""
  base = per_identity["base"]
  gain = per_identity[method]["world_judge"] - base["world_judge"]
  assert gain.mean() > 0.1, gain
  assert (gain > 0).mean() >= 0.7, gain
  assert per_identity[method]["world_prompt"].mean() >= 0.85, per_identity[method]["world_prompt"]


def test_the_finetune_adds_identity_over_the_prediction_alone(per_identity):
  """The paper's LoRA relaxation over the prediction alone, paired per identity by the judge:
  measured 0.135 (SD 0.103; 94% of 32 identities gain), SE over 10 identities 0.033, so 0.05 sits
  2.6 SE below it, and a finetune that adds nothing would need +1.5 SE. The shipped default's
  (LiDB) addition is too small to test here (README)."""
  added = per_identity["full_lora"]["world_judge"] - per_identity["only_hyper"]["world_judge"]
  assert added.mean() > 0.05, added
