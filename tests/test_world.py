"""The world renderer: deterministic, and every context and style changes the image as named."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hdb_jax.errors import UserError
from hdb_jax.world.truth import faces
from hdb_jax.world.truth.render import HAT_COLOURS, render
from hdb_jax.world.truth.scene import ATTRIBUTES, Scene, caption, parse_prompt
from hdb_jax.world.truth.styles import PIXEL_BLOCKS

RES = 64
IDENTITIES = range(5)


def _near(image: np.ndarray, colour, tolerance: int = 30) -> np.ndarray:
  return np.all(np.abs(image.astype(int) - np.asarray(colour)) <= tolerance, axis=-1)


def _corners(image: np.ndarray) -> np.ndarray:
  """The mean colour of the top corners (never covered by the face, the hat or the pose)."""
  return np.concatenate([image[:6, :6], image[:6, -6:]]).reshape(-1, 3).mean(0)


def _lit_windows(image: np.ndarray) -> int:
  """Pixels the colour of a lit window in the side strips beside the face."""
  sides = np.concatenate([image[:, :6], image[:, -6:]])
  return int(_near(sides, (240, 220, 120), 35).sum())


def _eye_line(identity: int) -> float:
  """The identity's eye line in view 0, as a fraction of the side (before the view's roll)."""
  view = faces.draw_view(0, identity, 0)
  geometry = faces.face_geometry(faces.identity_params(0, identity), view.yaw)
  return (geometry.eye_y - 0.5) * view.scale + 0.5 + view.shift[1]


def test_renders_are_a_pure_function_of_their_arguments():
  scene = Scene(headwear="blue hat", glasses="glasses", background="forest", style="watercolour")
  first = render(3, 1, scene, RES, seed=5)
  np.testing.assert_array_equal(first, render(3, 1, scene, RES, seed=5))
  assert first.shape == (RES, RES, 3) and first.dtype == np.uint8
  for other in (
    render(4, 1, scene, RES, 5),
    render(3, 2, scene, RES, 5),
    render(3, 1, scene, RES, 6),
  ):
    assert np.abs(first.astype(int) - other).mean() > 1  # identity, view and seed all matter


def test_identity_is_the_face_and_clothing_belongs_to_the_view():
  assert not any(word in name for name in faces.PARAM_NAMES for word in ("shirt", "cloth"))
  params = faces.identity_params(seed=5, identity_id=3)
  assert params.shape == (faces.NUM_PARAMS,) and params.min() >= 0 and params.max() <= 1
  np.testing.assert_array_equal(params, faces.identity_params(5, 3))
  assert not np.allclose(params, faces.identity_params(6, 3))
  # clothing is drawn per view: one identity's views and one view id of many identities both
  # spread over the colours (uniform in [0.05, 0.95]: std 0.26)
  by_view = np.array([faces.draw_view(0, 3, v).clothing for v in range(64)])
  by_identity = np.array([faces.draw_view(0, i, 0).clothing for i in range(64)])
  assert by_view.std(0).min() > 0.2 and by_identity.std(0).min() > 0.2
  # another colour of clothing changes the clothing alone: nothing above the chin
  view = faces.draw_view(0, 3, 0)
  recoloured = render(3, 0, None, RES, view=view.__class__(**{**view.__dict__, "clothing": (
    1 - view.clothing[0], 1 - view.clothing[1], 1 - view.clothing[2])}))  # fmt: skip
  changed = np.nonzero(np.abs(recoloured.astype(int) - render(3, 0, None, RES)).sum(-1) > 30)[0]
  chin = faces.face_geometry(params).bottom
  assert len(changed) > 0.03 * RES * RES and changed.min() > (chin - 0.1) * RES


def test_even_the_closest_of_10000_identities_differ_at_64_px():
  params = np.stack([faces.identity_params(0, i) for i in range(10_000)])
  squared = (params**2).sum(1)
  closest, pair = np.inf, (0, 0)
  for start in range(0, len(params), 2000):
    d = (
      squared[start : start + 2000, None]
      + squared[None]
      - 2 * params[start : start + 2000] @ params.T
    )
    d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
    k = np.unravel_index(np.argmin(d), d.shape)
    if d[k] < closest:
      closest, pair = d[k], (start + k[0], k[1])
  # measured: the closest pair of the 10,000 is 0.97 apart over 37 parameters (a typical pair ~2.3)
  assert np.sqrt(closest) > 0.5, np.sqrt(closest)
  view = faces.View()  # one view for both: only the face differs
  a, b = (faces.render_face(params[k], view, RES).astype(int) for k in pair)
  # measured 29.7 grey levels of mean absolute difference (typical pairs ~30, the least of 100
  # pairs 7.6): far above the 1-2 levels of noise a model's sample carries
  assert np.abs(a - b).mean() > 5, np.abs(a - b).mean()


@pytest.mark.parametrize("hat", list(HAT_COLOURS))
def test_a_hat_adds_its_colour_above_the_eyes(hat):
  for i in IDENTITIES:
    bare, hatted = render(i, 0, Scene(), RES), render(i, 0, Scene(headwear=hat), RES)
    added = _near(hatted, HAT_COLOURS[hat]) & ~_near(bare, HAT_COLOURS[hat])
    rows = np.nonzero(added)[0]
    # >= 2% of the image, all in the upper 60% (the head top; the eyes sit at ~0.42)
    assert added.mean() > 0.02 and rows.max() < 0.6 * RES, (hat, i, added.mean(), rows.max())


def test_glasses_sit_on_the_eye_line_and_sunglasses_are_dark():
  for i in IDENTITIES:
    bare = render(i, 0, Scene(), RES).astype(int)
    for kind in ("glasses", "sunglasses"):
      worn = render(i, 0, Scene(glasses=kind), RES).astype(int)
      rows = np.nonzero(np.abs(worn - bare).sum(-1) > 60)[0]
      # the frame of clear glasses is thin: >= 0.5% of the pixels change, centred on the eye line
      # (the view's framing moves it by at most 0.05 of the side)
      assert len(rows) > 0.005 * RES * RES and abs(rows.mean() / RES - _eye_line(i)) < 0.07, (
        kind, i, rows.mean() / RES, _eye_line(i))  # fmt: skip
    dark = lambda image: image.max(-1) < 45
    darkened = dark(render(i, 0, Scene(glasses="sunglasses"), RES)) & ~dark(bare)
    assert darkened.mean() > 0.005, (i, darkened.mean())


def test_a_smile_opens_the_mouth_below_the_eyes():
  for i in IDENTITIES:
    neutral = render(i, 0, Scene(), RES).astype(int)
    smile = render(i, 0, Scene(expression="smile"), RES).astype(int)
    changed = np.nonzero(np.abs(smile - neutral).sum(-1) > 60)[0]
    teeth = smile.min(-1) - neutral.min(-1) > 40  # white teeth where the lips were
    assert changed.min() > 0.45 * RES and teeth.sum() >= 3, (i, changed.min(), teeth.sum())


def test_each_background_is_the_scene_it_names():
  """Checked in the top corners (never covered by the face, hat or pose) and the whole frame."""
  for i in IDENTITIES:
    studio, beach, forest, city, night = (
      render(i, 0, Scene(background=b), RES) for b in ATTRIBUTES["background"]
    )
    r, g, b = _corners(studio)
    assert min(r, g, b) > 170 and max(r, g, b) - min(r, g, b) < 30  # light grey
    r, g, b = _corners(beach)
    assert b > r + 60 and b > 150  # blue sky
    for sand in (beach[-4:, :4], beach[-4:, -4:]):  # the bottom corners: sand, whatever the light
      r, g, b = sand.reshape(-1, 3).mean(0)
      assert r > g > b and r - b > 40 and r > 150
    r, g, b = _corners(forest)
    assert g > r + 25 and g > b + 25  # green
    r, g, b = _corners(night)
    assert max(r, g, b) < 70  # dark sky
    assert (night.min(-1) > 200).any()  # stars or the moon
    assert _lit_windows(city) > 5 and _lit_windows(studio) == 0


def test_each_style_is_the_transform_it_names():
  for i in IDENTITIES:
    photo = render(i, 0, Scene(), RES).astype(int)
    sketch, pop, water, pixel = (
      render(i, 0, Scene(style=s), RES).astype(int) for s in ATTRIBUTES["style"][1:]
    )
    assert (sketch.max(-1) - sketch.min(-1)).max() == 0 and sketch.mean() > 150  # grey on paper
    assert len(np.unique(pop.reshape(-1, 3), axis=0)) <= 27  # 3 levels a channel
    assert len(np.unique(photo.reshape(-1, 3), axis=0)) > 100
    roughness = lambda image: np.abs(np.diff(image, axis=1)).mean()
    assert roughness(water) < 0.7 * roughness(photo) and water.min() >= 50  # soft, pale
    block = RES // PIXEL_BLOCKS
    blocks = pixel.reshape(PIXEL_BLOCKS, block, PIXEL_BLOCKS, block, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # constant blocks
    assert len(np.unique(pixel.reshape(-1, 3), axis=0)) <= 12  # a small palette


@pytest.mark.parametrize("style", ATTRIBUTES["style"])
def test_views_of_one_identity_stay_closer_than_two_identities_in_every_style(style):
  images = {(i, v): render(i, v, Scene(style=style), RES).astype(np.float32) for i in range(6)
            for v in range(2)}  # fmt: skip
  same = [np.abs(images[i, 0] - images[i, 1]).mean() for i in range(6)]
  different = [
    np.abs(images[i, 0] - images[j, 0]).mean() for i, j in itertools.combinations(range(6), 2)
  ]
  # by pixels alone (pose and light vary between views), so only 'closer'; World-ID measures more
  assert np.mean(same) < np.mean(different), (style, np.mean(same), np.mean(different))


def test_captions_read_back_to_their_scene_and_never_name_the_identity():
  scenes = [Scene(*values) for values in itertools.product(*ATTRIBUTES.values())]
  assert len(scenes) == 5 * 3 * 2 * 5 * 5
  for scene in scenes:
    text = caption(scene)
    assert parse_prompt(text) == scene and parse_prompt(caption(scene, token="sks")) == scene
    assert not any(ch.isdigit() for ch in text)
  assert caption(Scene()) == "a face"
  assert caption(Scene(expression="smile", headwear="red hat", style="pixel art"), token="sks") == (
    "a smiling sks face wearing a red hat in pixel art style"
  )
  for bad in ("a dog", "a face with a moustache", "a face in pixel art style wearing a red hat"):
    with pytest.raises(UserError):
      parse_prompt(bad)
  with pytest.raises(UserError, match="headwear must be one of"):
    Scene(headwear="crown")


def test_render_cli_writes_the_ground_truth(tmp_path):
  out = tmp_path / "face.png"
  prompt = "a smiling face wearing a green hat with glasses at night in watercolour style"
  cmd = [sys.executable, "-m", "hdb_jax.world", "render", "--identity=7", "--view=2",
         f"--prompt={prompt}", "--resolution=48", f"--out={out}"]  # fmt: skip
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  expected = render(7, 2, parse_prompt(prompt), 48)
  np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
  bad = subprocess.run([*cmd[:5], "--prompt=a face with a moustache", f"--out={out}"],
                       capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: prompt")


def test_training_examples_are_seeded_and_never_held_out():
  from hdb_jax.world.truth import sampling

  first = [sampling.training_example(0, 5, i) for i in range(64)]
  assert first == [sampling.training_example(0, 5, i) for i in range(64)]
  assert first != [sampling.training_example(0, 6, i) for i in range(64)]
  assert all(0 <= identity < sampling.TRAIN_IDENTITIES for identity, _, _ in first)
  held = sampling.held_out_identities(10, start=3)
  assert min(held) >= sampling.HELD_OUT_START > sampling.TRAIN_IDENTITIES
  pairs = [sampling.paired_example(0, 5, i) for i in range(64)]
  assert all(pairs[2 * k][0] == pairs[2 * k + 1][0] for k in range(32))
  assert len({identity for identity, _, _ in pairs}) == 32  # 100,000 ids: no collision here
  assert sum(pairs[2 * k][2] != pairs[2 * k + 1][2] for k in range(32)) >= 28


def test_random_scenes_keep_defaults_at_the_configured_rates():
  from hdb_jax.world.truth import sampling
  from hdb_jax.world.truth.scene import ATTRIBUTES

  rng = np.random.default_rng(0)
  scenes = [sampling.random_scene(rng) for _ in range(4000)]
  for name, rate in sampling.DEFAULT_PROBABILITY.items():
    kept = np.mean([getattr(s, name) == ATTRIBUTES[name][0] for s in scenes])
    # binomial std at n = 4000 is at most 0.008: 4 std
    assert abs(kept - rate) < 0.032, name
    assert {getattr(s, name) for s in scenes} == set(ATTRIBUTES[name])


def test_world_source_reads_photos_of_either_split():
  """config.data.source='world' / 'world:held_out': the default-scene renders of identity ids 0, 1,
  ... or 1,000,000, ... (never trained on); bad splits and sizes are refused."""
  from hdb_jax.config.pieces import data_config
  from hdb_jax.data import SourceError, make_source
  from hdb_jax.world.truth.sampling import HELD_OUT_START

  config = data_config()
  config.update(source="world", num_identities=3, views_per_identity=2)
  source = make_source(config)
  assert [e.identity_id for e in source.examples] == [f"world/{i:07d}" for i in (0, 0, 1, 1, 2, 2)]
  assert [e.index for e in source.examples] == list(range(6))
  photo = source.examples[3].load(RES)  # identity 1, view 1
  assert photo.dtype == np.float32 and photo.shape == (RES, RES, 3)
  np.testing.assert_allclose((photo + 1) * 127.5, render(1, 1, Scene(), RES), atol=1e-3)
  config.source = "world:held_out"
  held = make_source(config).examples
  assert held[0].identity_id == f"world/{HELD_OUT_START:07d}"
  np.testing.assert_allclose(
    (held[2].load(RES) + 1) * 127.5, render(HELD_OUT_START + 1, 0), atol=1e-3
  )
  for bad, message in (("world:test", "splits"), ("nonsense", "'world")):
    config.source = bad
    with pytest.raises(SourceError, match=message):
      make_source(config)
  config.update(source="world", num_identities=0)
  with pytest.raises(SourceError, match="num_identities >= 1"):
    make_source(config)


def test_world_variants_of_the_phases_agree():
  """configs/*.py:world: the world model and its data everywhere; Phase 1 runs its own Phase 0 on
  the same 1,024 identities; personalization defaults to the shipped world hypernetwork."""
  import os

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import evaluate, hyper, lidb, personalize
  from hdb_jax.config.phases import phase0_of

  phase0, phase1 = lidb.get_config("world"), hyper.get_config("world")
  for config in (phase0, phase1, personalize.get_config("world"), evaluate.get_config("world")):
    assert config.pretrained == "world" and config.data.source == "world"
    assert config.compute_dtype == "float32"
  auto = phase0_of(phase1)
  for key in ("steps", "identities_per_step", "num_identities"):
    assert auto[key] == phase0[key], key
  assert phase1.weights == "auto" and phase1.encoder.pretrained == "world-recognizer"
  assert not phase1.encoder.trainable and phase1.beta == 0.0  # the shipped hypernetwork's run
  assert personalize.get_config("world").hypernet == "world"
  assert evaluate.get_config("world").recognizer == "world"


def test_missing_world_hypernetwork_says_how_to_make_it(monkeypatch, tmp_path):
  from hdb_jax.errors import MissingFileError
  from hdb_jax.formats import hypernet_loading

  monkeypatch.setattr(hypernet_loading, "WORLD_HYPERNET_DIR", str(tmp_path / "none"))
  with pytest.raises(MissingFileError, match="configs/hyper.py:world"):
    hypernet_loading.resolve_hypernet("world")
  assert hypernet_loading.resolve_hypernet("/some/dir") == "/some/dir"


def test_world_vit_is_a_64px_encoder_made_on_first_use(tmp_path):
  """'world-vit:DIR' writes a random ViT once (64 px, 8 px patches: 64 tokens + CLS, width 128) and
  reads it back through the same loader; its features differ between two world faces."""
  import jax.numpy as jnp

  from hdb_jax.models.image_encoder import image_features, load_image_encoder

  name = f"world-vit:{tmp_path / 'vit'}"
  encoder = load_image_encoder(name)
  assert (encoder.image_size, encoder.num_tokens, encoder.hidden_size) == (64, 65, 128)
  again = load_image_encoder(name)
  faces = np.stack([render(i, 0) for i in (0, 1)]).astype(np.float32) / 127.5 - 1
  tokens = np.asarray(image_features(encoder, encoder.params, jnp.asarray(faces)))
  assert tokens.shape == (2, 65, 128) and np.all(np.isfinite(tokens))
  np.testing.assert_array_equal(
    tokens, np.asarray(image_features(again, again.params, jnp.asarray(faces)))
  )
  assert np.abs(tokens[0] - tokens[1]).mean() > 1e-3
