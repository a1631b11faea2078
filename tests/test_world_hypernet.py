"""The shipped world hypernetwork (hdb_jax/assets/world-hypernet): its files are its card's, and it
works: one photo of a world face that no model ever saw becomes an identity whose images look like
that face (World-ID) and still show what the prompt asks (World-ID / World-prompt, the shipped
recognizer), better than the base model, from the prediction alone and with the fast finetune.

8 test-split identities x 3 prompts x 1 sample, the world personalization config (40 finetune steps
at lr 1e-2, DDIM 25, guidance 7.5); ~1.5 min on 2 cores. The full measurement (32 identities x 12
prompts) is in the card and the README.
"""

import json
import os

import numpy as np
import pytest

from hdb_jax.config.phases import personalization_config
from hdb_jax.diffusion.base import setup_base_model
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig
from hdb_jax.evaluate.loop import NoIdentity
from hdb_jax.evaluate.metrics import world_prompt_values
from hdb_jax.formats.hypernet_loading import WORLD_HYPERNET_DIR, load_predictor
from hdb_jax.formats.hypernet_release import RELEASE
from hdb_jax.io.files import file_sha256
from hdb_jax.personalize.step import personalize_images
from hdb_jax.world.recognizer.network import load_recognizer
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import split_identities

PROMPTS = [
  "a {token} face",
  "a {token} face wearing a red hat",
  "a {token} face in pop-art style",
]
IDENTITIES = 8


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, np.ndarray]]:
  """{method: {'world_id': [identities, prompts], 'world_prompt': [identities, prompts]}} for the
  base model, the prediction alone and prediction + finetune."""
  config = personalization_config("world")
  base = setup_base_model(config)
  predictor = load_predictor("world", base)
  photos = np.stack([render(i, 0, None, base.sd.resolution)
                     for i in split_identities("test", IDENTITIES)])  # fmt: skip
  images = photos.astype(np.float32) / 127.5 - 1.0
  sampling = SamplingConfig(steps=config.sample_steps, guidance=config.guidance, seed=config.seed)
  only = config.copy_and_resolve_references()
  only.steps = 0
  methods = {
    "base": [NoIdentity(base.token)] * IDENTITIES,
    "only_hyper": personalize_images(base, only, images, predictor).identities,
    "full": personalize_images(base, config, images, predictor).identities,
  }
  recognizer = load_recognizer()
  reference = recognizer.embed(photos)  # [I, D]
  out = {}
  for name, identities in methods.items():
    drawn = generate(base.sd, identities, PROMPTS, 1, sampling)[:, :, 0]  # [I, P, H, W, 3]
    flat = drawn.reshape((-1,) + drawn.shape[2:])
    embedded = recognizer.embed(flat).reshape(IDENTITIES, len(PROMPTS), -1)
    out[name] = {
      "world_id": np.einsum("ipd,id->ip", embedded, reference),
      "world_prompt": world_prompt_values(recognizer, flat, PROMPTS * IDENTITIES).reshape(
        IDENTITIES, len(PROMPTS)
      ),
    }
  return out


def test_the_shipped_files_are_the_cards():
  with open(os.path.join(WORLD_HYPERNET_DIR, RELEASE), encoding="utf-8") as f:
    release = json.load(f)
  for name, entry in release["files"].items():
    path = os.path.join(WORLD_HYPERNET_DIR, name)
    assert os.path.getsize(path) == entry["bytes"] and file_sha256(path) == entry["sha256"], name
  # measured on held-out identities (the README table), not an empty card
  assert release["quality"]["methods"]["only_hyper"]["means"]["world_id"] > 0.1


def test_a_held_out_face_personalized_looks_like_itself_and_follows_the_prompt(scores):
  """World-ID gains over the base model, paired per identity. On 24 validation identities x 12
  prompts (benchmarks/world_tables.py) the per-identity gain was 0.212 +- 0.091 (SD) for the
  prediction alone and 0.256 +- 0.126 with the finetune; with 3 prompts an identity's mean is
  noisier (at most ~2x the SD), so the mean of 8 identities has an SE of at most ~0.065 / 0.09, and
  0.1 sits >= 1.7 SE below either expectation, while a model that adds no identity (gain 0) would
  need a +1.1-1.5 SE draw to pass. World-prompt: the base model reads 0.90 of the attributes on the
  12-prompt set and the personalized ones 0.90 / 0.94 (SD 0.04 per identity); a drop of 0.1 would be
  the finetune overwriting the prompt (DreamBooth LoRA at 400 steps: 0.50). Measured here: gains
  0.368 (prediction alone; every identity >= 0.29) and 0.281 (with the finetune, LiDB relaxation;
  every identity > 0), World-prompt 0.942 and 0.908 against the base model's 0.867."""
  base = scores["base"]
  for method in ("only_hyper", "full"):
    gain = (scores[method]["world_id"] - base["world_id"]).mean(axis=1)  # per identity
    assert gain.mean() > 0.1, (method, gain)
    assert (gain > 0).mean() >= 0.75, (method, gain)  # most faces, not a few
    prompt = scores[method]["world_prompt"].mean()
    assert prompt >= base["world_prompt"].mean() - 0.1 and prompt >= 0.75, (method, prompt)
