"""Input pipelines: image decoding, synthetic faces, folder/tfds sources, sharding, positions,
pairing."""

import io
import logging as std_logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

from hdb_jax import data
from hdb_jax.config.pieces import data_config
from hdb_jax.data import augment
from hdb_jax.io.images import ImageError, load_image
from hdb_jax.world.truth.source import synthetic_face, synthetic_name, synthetic_source

# One 8-bit step in [-1, 1] units is 2/255; JPEG's lossy coding of flat colour stays within a few
# steps.
STEP = 2 / 255
JPEG_TOL = 6 * STEP


def _save(path, image: Image.Image, **kwargs) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kwargs)
  return str(path)


def _noise(size: int, seed: int = 0) -> Image.Image:
  return Image.fromarray(
    np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
  )


def _corner_image(size: int = 96) -> Image.Image:
  """Blue with a red block in the top-left corner: any rotation or flip moves the block."""
  pixels = np.zeros((size, size, 3), np.uint8)
  pixels[...] = (0, 0, 255)
  pixels[: size // 3, : size // 3] = (255, 0, 0)
  return Image.fromarray(pixels)


def _rgb(value) -> np.ndarray:
  return np.asarray(value, np.float32) / 127.5 - 1


# ----- load_image: the conversions -----


def test_modes_convert_to_rgb(tmp_path):
  red = (255, 0, 0)
  grey16 = np.full((80, 80), 0x8000, np.uint16)  # 16-bit half scale -> 8-bit 128
  rgba = np.zeros((80, 80, 4), np.uint8)
  rgba[:, :40] = (255, 0, 0, 255)  # opaque red left half, transparent right half
  la = np.zeros((80, 80, 2), np.uint8)
  la[:, :40] = (60, 255)
  p_image = Image.new("RGB", (80, 80), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
  cases = {
    "grey16.png": (Image.fromarray(grey16), _rgb([128, 128, 128]), _rgb([128, 128, 128]), STEP),
    "cmyk.jpg": (Image.new("RGB", (80, 80), red).convert("CMYK"), _rgb(red), _rgb(red), JPEG_TOL),
    "rgba.png": (Image.fromarray(rgba, "RGBA"), _rgb(red), _rgb([255, 255, 255]), STEP),
    "la.png": (Image.fromarray(la, "LA"), _rgb([60] * 3), _rgb([255] * 3), STEP),
    "palette.png": (p_image, _rgb([0, 200, 0]), _rgb([0, 200, 0]), STEP),
    "palette.gif": (p_image, _rgb([0, 200, 0]), _rgb([0, 200, 0]), STEP),
    "grey.png": (Image.new("L", (80, 80), 30), _rgb([30] * 3), _rgb([30] * 3), STEP),
  }
  for name, (image, left, right, tol) in cases.items():
    path = _save(tmp_path / name, image)
    if name == "grey16.png":
      assert Image.open(path).mode.startswith("I"), "the fixture must really be a 16-bit file"
    out = load_image(path, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.float32, name
    # Columns 4..20 and 44..60 stay clear of the Lanczos ringing at the half-way edge (kernel radius
    # 3 px).
    np.testing.assert_allclose(out[:, 4:20].mean((0, 1)), left, atol=tol, err_msg=name)
    np.testing.assert_allclose(out[:, 44:60].mean((0, 1)), right, atol=tol, err_msg=name)


def test_exif_rotation_is_applied(tmp_path):
  upright = _corner_image()
  exif = Image.Exif()
  exif[0x0112] = (
    6  # "rotate 90 CW to display": exif_transpose applies ROTATE_270 to the stored pixels
  )
  stored = upright.transpose(Image.Transpose.ROTATE_90)
  path = _save(tmp_path / "rotated.jpg", stored, exif=exif, quality=95)
  out = load_image(path, 96)
  expected = _rgb(np.asarray(upright))
  assert np.abs(out - expected).mean() < JPEG_TOL
  # Without the rotation the red block would sit in another corner: the test can tell.
  # two of nine blocks differ: 0.296
  assert np.abs(_rgb(np.asarray(stored)) - expected).mean() > 0.25
  np.testing.assert_allclose(out[5:25, 5:25].mean((0, 1)), _rgb([255, 0, 0]), atol=JPEG_TOL)


def test_centre_crop_and_antialiased_resize(tmp_path):
  wide = np.zeros((100, 200, 3), np.uint8)
  wide[:, :50], wide[:, 50:150], wide[:, 150:] = (0, 255, 0), (0, 0, 255), (255, 0, 0)
  out = load_image(_save(tmp_path / "wide.png", Image.fromarray(wide)), 50)
  np.testing.assert_allclose(out, np.broadcast_to(_rgb([0, 0, 255]), out.shape), atol=STEP)
  # A 1-pixel checkerboard halved: an antialiasing filter gives flat grey (0), point sampling +-1.
  checker = ((np.indices((128, 128)).sum(0) % 2) * 255).astype(np.uint8)
  out = load_image(_save(tmp_path / "checker.png", Image.fromarray(checker)), 64)
  assert np.abs(out[4:-4, 4:-4]).max() < 0.1


def test_jpeg_draft_decoding_matches_full_decoding(tmp_path):
  """Big JPEGs are decoded at a reduced DCT scale: the result must stay close to a full decode +
  resize."""
  # 1024 px
  big = Image.fromarray(np.kron(np.asarray(_noise(64, seed=3)), np.ones((16, 16, 1), np.uint8)))
  path = _save(tmp_path / "big.jpg", big, quality=95)
  reference = _rgb(
    np.asarray(Image.open(path).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS))
  )
  # 1024 px to 128: decoded at 1/4 scale (256 px, a box filter) then Lanczos. Measured mean error
  # 2.2 8-bit steps on this blocky noise; a plain 1/8-scale decode (box filter only) measures 8.3.
  assert np.abs(load_image(path, 128) - reference).mean() < 4 * STEP


def test_small_images_upscale_with_warning_or_fail(tmp_path, caplog):
  path = _save(tmp_path / "small.png", _noise(80))
  with caplog.at_level(std_logging.WARNING):
    assert load_image(path, 128, min_size=64).shape == (128, 128, 3)
  assert "upscaling" in caplog.text and "small.png" in caplog.text
  with pytest.raises(ImageError, match="small.png.*upscaling is off"):
    load_image(path, 128, min_size=64, upscale=False)


# ----- load_image: the errors -----


def _bad_files(root) -> dict[str, str]:
  """name -> a regex its ImageError must match. Written under root."""
  good = io.BytesIO()
  _noise(128).save(good, format="JPEG", quality=90)
  encoded = good.getvalue()
  with open(os.path.join(root, "truncated.jpg"), "wb") as f:
    f.write(encoded[: len(encoded) // 2])
  open(os.path.join(root, "empty.jpg"), "wb").close()
  with open(os.path.join(root, "text.png"), "w", encoding="utf-8") as f:
    f.write("this is not a picture\n")
  _noise(32).save(os.path.join(root, "tiny.png"))
  return {
    "truncated.jpg": "truncated or corrupt",
    "empty.jpg": "empty file",
    "text.png": "not an image",
    "tiny.png": "below min_size",
  }


def test_errors_name_the_file_on_one_line(tmp_path):
  assert ImageFile.LOAD_TRUNCATED_IMAGES is False
  for name, pattern in _bad_files(tmp_path).items():
    path = str(tmp_path / name)
    with pytest.raises(ImageError, match=pattern) as error:
      load_image(path, 64)
    assert str(error.value).startswith(path) and "\n" not in str(error.value), name
  with pytest.raises(ImageError, match="missing.jpg: no such file"):
    load_image(tmp_path / "missing.jpg", 64)
  with pytest.raises(ImageError, match="not a file"):
    load_image(tmp_path, 64)
  with pytest.raises(ImageError, match="^record 7: empty file"):
    load_image(b"", 64, name="record 7")
  with open(tmp_path / "text.png", "rb") as f:
    with pytest.raises(ImageError, match="^<22 bytes>: not an image"):
      load_image(f.read(), 64)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
  # 12,000 px: Pillow only warns
  warned = _save(tmp_path / "warned.png", Image.new("RGB", (120, 100)))
  # > 2x the limit: Pillow raises
  refused = _save(tmp_path / "refused.png", Image.new("RGB", (300, 300)))
  with (
    pytest.warns(Image.DecompressionBombWarning),
    pytest.raises(ImageError, match="decompression.bomb limit"),
  ):
    load_image(warned, 64)
  with pytest.raises(ImageError, match=f"^{refused}: refused as a decompression bomb"):
    load_image(refused, 64)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
  assert load_image(refused, 64).shape == (64, 64, 3)


# ----- sources and pipeline -----


def _config(**overrides):
  config = data_config()
  config.update(overrides)
  return config


def _iterate(
  config,
  batches,
  *,
  batch_size=4,
  resolution=32,
  process_index=0,
  process_count=1,
  seed=0,
  start_position=0,
  source=None,
  **kwargs,
):
  with data.make_iterator(
    config,
    batch_size,
    resolution,
    process_index=process_index,
    process_count=process_count,
    seed=seed,
    start_position=start_position,
    source=source,
    **kwargs,
  ) as it:
    out = [next(it) for _ in range(batches)]
    return out, it.position, it


def test_default_config_and_source_errors(tmp_path):
  config = data_config()
  assert (
    config.source,
    config.image_key,
    config.data_dir,
    config.manual_dir,
    config.augment,
    config.num_identities,
    config.views_per_identity,
    config.seed,
    config.identity_from_subfolder,
    config.min_size,
  ) == ("synthetic", "image", None, None, False, 8, 4, 0, False, 64)
  with pytest.raises(data.SourceError, match="expected 'synthetic', 'world"):
    data.make_source(_config(source="s3://bucket"))
  with pytest.raises(data.SourceError, match="no such directory"):
    data.make_source(_config(source=f"folder:{tmp_path}/nowhere"))
  with pytest.raises(data.SourceError, match="no .jpg"):
    data.make_source(_config(source=f"folder:{tmp_path}"))  # exists, but empty


def test_synthetic_batches():
  (batch,), position, _ = _iterate(_config(num_identities=3, views_per_identity=2), 1, batch_size=6)
  assert batch["image"].shape == (6, 32, 32, 3) and batch["image"].dtype == np.float32
  assert -1 <= batch["image"].min() < batch["image"].max() <= 1
  assert batch["index"].dtype == np.int64 and sorted(batch["index"].tolist()) == list(range(6))
  assert sorted(batch["identity_id"].tolist()) == sorted(
    ["synthetic/00000", "synthetic/00001", "synthetic/00002"] * 2
  )
  assert position == {"epoch": 0, "offset": 6}
  # Each image is exactly the one its index names.
  i = int(batch["index"][0])
  expected = synthetic_face(i // 2, i % 2, 0, 32) / 127.5 - 1
  np.testing.assert_allclose(batch["image"][0], expected, atol=1e-6)


def test_shuffle_is_seeded_and_per_epoch():
  config = _config(num_identities=6, views_per_identity=2)
  first, _, _ = _iterate(config, 6, batch_size=4)  # two epochs of 12
  again, _, _ = _iterate(config, 6, batch_size=4)
  other, _, _ = _iterate(config, 6, batch_size=4, seed=1)
  order = np.concatenate([b["index"] for b in first])
  np.testing.assert_array_equal(order, np.concatenate([b["index"] for b in again]))
  # each epoch covers the source once
  assert sorted(order[:12]) == sorted(order[12:]) == list(range(12))
  assert not np.array_equal(order[:12], order[12:])  # and reshuffles
  assert not np.array_equal(order, np.concatenate([b["index"] for b in other]))


def test_process_shards_are_disjoint_and_cover():
  source = synthetic_source(7, 3)  # 21 examples: shards of 11 and 10
  for epoch in (0, 1):
    shards = [
      [e.index for e in source.epoch(epoch, process_index=p, process_count=2, seed=3, shuffle=True)]
      for p in (0, 1)
    ]
    assert len(shards[0]) == 11 and len(shards[1]) == 10
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(21))
  # The iterators see the same split: one epoch of each process, batch 1.
  config = _config(num_identities=7, views_per_identity=3)
  seen = [
    np.concatenate(
      [
        b["index"]
        for b in _iterate(config, n, batch_size=1, process_index=p, process_count=2, seed=3)[0]
      ]
    )
    for p, n in ((0, 11), (1, 10))
  ]
  assert sorted(np.concatenate(seen).tolist()) == list(range(21))


def _assert_same_batch(a, b):
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["identity_id"], b["identity_id"])
  np.testing.assert_array_equal(a["index"], b["index"])


def test_restored_position_gives_the_same_next_batch():
  # 15: batches of 4 straddle epochs
  config = _config(num_identities=5, views_per_identity=3, augment=True)
  for taken in (0, 3, 4):
    batches, _, _ = _iterate(config, taken + 1, batch_size=4, seed=2)
    _, position, _ = _iterate(config, taken, batch_size=4, seed=2)
    (resumed,), _, _ = _iterate(config, 1, batch_size=4, seed=2, start_position=position)
    _assert_same_batch(resumed, batches[-1])
  assert position == {"epoch": 1, "offset": 1}  # 16 examples in = one epoch of 15, plus one


def test_augmentation_flips_and_jitters_a_little():
  image = _rgb(np.asarray(_corner_image(32)))
  flips, changes = 0, []
  for i in range(200):
    out = augment.augment_image(image, augment.example_rng(0, 0, i), flip=True, color_jitter=0.05)
    flipped = out[:4, -4:, 0].mean() > out[:4, :4, 0].mean()  # the red corner moved to the right
    flips += flipped
    changes.append(np.abs((out[:, ::-1] if flipped else out) - image).mean())
    assert out.dtype == np.float32 and -1 <= out.min() and out.max() <= 1
  assert 70 <= flips <= 130  # Binomial(200, 1/2): 100 +- 7 (1 sd); fixed seeds make it exact anyway
  # Jitter +-0.1 brightness (of 2), +-10% contrast and saturation: small, but it does change pixels.
  assert 0.005 < np.mean(changes) and max(changes) < 0.25
  assert np.array_equal(
    augment.augment_image(image, augment.example_rng(0, 0, 7), color_jitter=0.05),
    augment.augment_image(image, augment.example_rng(0, 0, 7), color_jitter=0.05),
  )


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
  """alice/ and bob/ with good files in every awkward mode, plus bad files. -> (root, good names,
  bad names)."""
  root = tmp_path_factory.mktemp("faces")
  faces = [Image.fromarray(synthetic_face(i, v, 0, 72)) for i in range(2) for v in range(2)]
  good = {
    "alice/plain.jpg": lambda p: faces[0].save(p, quality=90),
    "alice/sixteen.png": lambda p: Image.fromarray(
      (np.asarray(faces[1].convert("L"), np.uint16) * 257)
    ).save(p),
    "alice/cmyk.jpeg": lambda p: faces[0].convert("CMYK").save(p),
    "alice/photo.webp": lambda p: faces[1].save(p),
    "bob/rgba.png": lambda p: faces[2].convert("RGBA").save(p),
    "bob/palette.PNG": lambda p: faces[3].convert("P", palette=Image.Palette.ADAPTIVE).save(p),
    "bob/rotated.jpg": lambda p: faces[2].save(p, exif=_orientation(6)),
    "bob/deeper/more.png": lambda p: faces[3].save(p),
  }
  for name, write in good.items():
    os.makedirs(os.path.dirname(root / name), exist_ok=True)
    write(str(root / name))
  os.makedirs(root / "carol", exist_ok=True)
  bad = {f"carol/{name}" for name in _bad_files(root / "carol")}
  faces[0].save(root / "alice" / "ignored.gif")  # not an extension the folder source reads
  (root / ".hidden.jpg").write_bytes(b"")  # hidden: ignored
  return root, sorted(good), sorted(bad)


def _orientation(value: int) -> Image.Exif:
  exif = Image.Exif()
  exif[0x0112] = value
  return exif


def test_folder_source_skips_and_names_bad_files(image_folder, caplog):
  root, good, bad = image_folder
  config = _config(source=f"folder:{root}", shuffle=False)
  source = data.make_source(config)
  assert len(source) == len(good) + len(bad)
  with caplog.at_level(std_logging.WARNING):
    batches, position, it = _iterate(config, 4, batch_size=4, source=source)  # 16 good = two epochs
  ids = [i for b in batches for i in b["identity_id"].tolist()]
  # relative paths, in order; every good file, once an epoch
  assert ids[:8] == good and ids[8:] == good
  assert (
    it.skipped == len(bad) == 4
    and sorted(os.path.relpath(p, root) for p in it.skipped_files) == bad
  )
  for name in bad:
    # named once, not every epoch
    assert caplog.text.count(f"skipping bad file: {root / name}") == 1, name
  assert "4 bad file(s) skipped" in caplog.text  # the summary
  assert position == {
    "epoch": 1,
    "offset": 8,
  }  # carol/ (all bad) sorts last: the 16th good file is epoch 1's 8th
  # Sub-folder identities.
  config.identity_from_subfolder = True
  (batch,), _, _ = _iterate(config, 1, batch_size=8)
  assert batch["identity_id"].tolist() == [name.rpartition("/")[0] for name in good]
  assert set(batch["identity_id"].tolist()) == {"alice", "bob", "bob/deeper"}


def test_folder_position_restores_across_bad_files(image_folder):
  root, _, _ = image_folder
  config = _config(source=f"folder:{root}")
  batches, _, _ = _iterate(config, 4, batch_size=3, seed=4, process_index=1, process_count=2)
  _, position, _ = _iterate(config, 3, batch_size=3, seed=4, process_index=1, process_count=2)
  (resumed,), _, _ = _iterate(
    config, 1, batch_size=3, seed=4, process_index=1, process_count=2, start_position=position
  )
  _assert_same_batch(resumed, batches[-1])


def test_all_bad_or_empty_sources_are_errors(tmp_path):
  names = _bad_files(tmp_path)
  with pytest.raises(
    data.SourceError, match=f"no usable image in a whole epoch.*{len(names)} bad files"
  ):
    _iterate(_config(source=f"folder:{tmp_path}"), 1)
  with pytest.raises(data.SourceError, match="empty for process 3 of 4"):
    _iterate(_config(num_identities=1, views_per_identity=3), 1, process_index=3, process_count=4)


def test_paired_with_weights_by_identity_id():
  source = synthetic_source(4, 2)
  weights = {
    synthetic_name(i): {"layer": {"a_train": np.full((3, 1), i, np.float32)}} for i in (0, 2, 3)
  }
  weights["not/in/source"] = weights["synthetic/00000"]
  pairs = data.paired_examples(weights, source)
  assert len(pairs) == 6 and {e.identity_id for e, _ in pairs} == {
    "synthetic/00000",
    "synthetic/00002",
    "synthetic/00003",
  }
  assert all(w is weights[e.identity_id] for e, w in pairs)
  (batch,), _, _ = _iterate(
    _config(num_identities=4, views_per_identity=2), 1, batch_size=6, source=source, weights=weights
  )
  assert batch["weights"]["layer"]["a_train"].shape == (6, 3, 1)
  # each row holds its own identity's weights
  expected = [int(i.rsplit("/", 1)[1]) for i in batch["identity_id"]]
  np.testing.assert_array_equal(batch["weights"]["layer"]["a_train"][:, 0, 0], expected)
  with pytest.raises(data.SourceError, match="no image has an identity id of the weights index"):
    data.paired_examples({"someone/else": {}}, source)


def test_phase1_never_mirrors_a_face_beside_its_phase0_weights():
  source = synthetic_source(4, 2)
  weights = {synthetic_name(i): {"w": np.zeros(1, np.float32)} for i in range(4)}
  photos = {e.index: e.load(32) for e in source.examples}

  def mirrored(config, **kwargs):
    # 4 epochs of random draws
    (batch,), _, _ = _iterate(config, 1, batch_size=32, source=source, **kwargs)
    return [
      not np.array_equal(image, photos[int(i)]) for image, i in zip(batch["image"], batch["index"])
    ]

  # With colour jitter off, an augmented image differs from its photo only if it was mirrored.
  config = _config(augment=True, color_jitter=0.0, num_workers=0)
  # the targets were fitted to the unmirrored photos
  assert not any(mirrored(config, weights=weights))
  config.flip = True
  # without weights flipping is allowed: Binomial(32, 1/2) +- 2 sd
  assert 8 <= sum(mirrored(config)) <= 24
  with pytest.raises(ValueError, match="mirrored face would be paired with LiDB weights"):
    mirrored(config, weights=weights)


# ----- tfds: -----


def test_importing_the_package_does_not_import_tensorflow():
  code = "import sys, hdb_jax.data; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture(scope="module")
def tfds_config(image_folder, tmp_path_factory):
  """The image folder built as the TFDS dataset `hdb_image_folder` (through manual_dir, like
  celeb_a_hq)."""
  pytest.importorskip("tensorflow_datasets")
  import hdb_jax.data.tfds_folder  # noqa: F401  (registers the builder)

  root, _, _ = image_folder
  config = _config(
    source="tfds:hdb_image_folder",
    data_dir=str(tmp_path_factory.mktemp("tfds")),
    manual_dir=str(root),
    identity_key="filename",
  )
  with pytest.raises(data.SourceError, match="not prepared.*tfds build hdb_image_folder"):
    data.make_source(config)
  config.prepare = True
  return config


def _one_epoch(config, source, process_index, process_count):
  """{identity id: image} of one epoch of a process's shard (batch 1), and its bad-file count."""
  images_by_id = {}
  with data.make_iterator(
    config, 1, 32, process_index=process_index, process_count=process_count, seed=0, source=source
  ) as it:
    while True:
      batch = next(it)
      if it.position["epoch"] > 0:
        return images_by_id, it.skipped
      images_by_id[batch["identity_id"][0]] = batch["image"][0]


def test_tfds_source(tfds_config, image_folder):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  root, good, bad = image_folder
  source = data.make_source(tfds_config)
  assert not tf.config.get_visible_devices("GPU")
  assert len(source) == len(good) + len(bad)
  shards = [
    [e.index for e in source.epoch(0, process_index=p, process_count=2, seed=0, shuffle=True)]
    for p in (0, 1)
  ]
  assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(
    range(len(source))
  )
  # Two processes' epochs: every good record once, bad records skipped and counted.
  (first, skipped_0), (second, skipped_1) = (_one_epoch(tfds_config, source, p, 2) for p in (0, 1))
  assert not set(first) & set(second) and sorted({**first, **second}) == good
  assert skipped_0 + skipped_1 == len(bad)
  # The tfds path decodes with load_image: the same pixels as the folder source.
  (folder_batch,), _, _ = _iterate(
    _config(source=f"folder:{root}", shuffle=False), 1, batch_size=len(good)
  )
  for identity, image in zip(folder_batch["identity_id"].tolist(), folder_batch["image"]):
    np.testing.assert_array_equal(image, {**first, **second}[identity])
  # Restoring a position gives the same next batch (shuffled, augmented, across an epoch boundary).
  tfds_config.augment = True
  kwargs = dict(batch_size=3, seed=1, process_index=1, process_count=2, source=source)
  batches, _, _ = _iterate(tfds_config, 3, **kwargs)
  _, position, _ = _iterate(tfds_config, 2, **kwargs)
  assert position["epoch"] >= 1  # 6 examples taken from a shard of 6 holding bad records
  (resumed,), _, _ = _iterate(tfds_config, 1, start_position=position, **kwargs)
  _assert_same_batch(resumed, batches[-1])
  # Paired with weights by identity id: only those identities, each with its own weights.
  weights = {"alice/plain.jpg": {"w": np.zeros(2)}, "bob/rgba.png": {"w": np.ones(2)}}
  (batch,), _, _ = _iterate(tfds_config, 1, batch_size=4, source=source, weights=weights)
  assert set(batch["identity_id"].tolist()) == set(weights)
  np.testing.assert_array_equal(
    batch["weights"]["w"][:, 0], [weights[i]["w"][0] for i in batch["identity_id"]]
  )
