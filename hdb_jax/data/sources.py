"""Image sources, selected by `config.data.source`: every phase reads faces through one of these.

- `synthetic`: the world's procedural faces on a plain backdrop (`hdb_jax.world.truth.source`,
  registered by hdb_jax.world), `num_identities` x `views_per_identity`, identity ids
  'synthetic/00000', ... Deterministic from `config.data.seed`.
- `folder:<path>`: every .jpg/.jpeg/.png/.webp below <path> (recursive, sorted, hidden files
  ignored). Identity id: the file's path relative to <path> ('alice/1.jpg'), or with
  `config.data.identity_from_subfolder` its folder ('alice'), so several photos share one identity.
- `tfds:<name>[/<config>]`: a TensorFlow Datasets dataset with an image feature, read with tf.data
  on the host (TensorFlow is imported only for these, and kept off accelerators). Options:
  `config.data.image_key` (the image feature, default 'image'), `config.data.split` ('train'),
  `config.data.identity_key` (a feature naming the identity; default none: the id is
  '<split>[<index>]'), `config.data.data_dir` (where TFDS keeps prepared datasets; default
  ~/tensorflow_datasets), `config.data.manual_dir` (downloaded files for datasets that need a manual
  download) and `config.data.prepare` (build the dataset on first use, from `manual_dir` where it
  needs one).

CelebA-HQ (`tfds:celeb_a_hq/512`, 30,000 faces, one 'train' split) cannot be downloaded by TFDS. Its
builder reads `<manual_dir>/data<R>x<R>.tar` (`data512x512.tar` for celeb_a_hq/512): a tar of the
30,000 images as image files (PNG) at that resolution. Making it, once, on a machine with ~100 GB of
disk:

  1. Get the 30,000 CelebA-HQ images at 1024 px as files. The official route is CelebA (the
     in-the-wild `img_celeba` images and `list_landmarks_celeba.txt`) plus the CelebA-HQ deltas,
     turned into images by `dataset_tool.py create_celebahq` of
     github.com/tkarras/progressive_growing_of_gans (see its "Preparing datasets for training"; it
     pins old library versions). That tool writes TFRecords of raw arrays, not files (TFDS issue
     tensorflow/datasets#1496): export its 1024 px records to PNG files, or use an exported copy of
     the images you are licensed to use.
  2. Resize them to R x R (any antialiased resize, e.g. `hdb_jax.io.images.load_image`), save as
     PNG and pack: `tar -cf <manual_dir>/data512x512.tar -C <dir of the R px PNGs> .`
  3. Build the TFDS dataset once, on one host:
       tfds build celeb_a_hq/512 --manual_dir=<manual_dir> --data_dir=<data_dir>
     (or run once with `--config.data.prepare=True --config.data.manual_dir=<manual_dir>`), then
     point every run at it: `--config.data.source=tfds:celeb_a_hq/512
     --config.data.data_dir=<data_dir>`, and
     `--config.data.identity_key=image/filename` to name identities by file name.

The images from step 1 can also be used without TFDS: `folder:<dir>`, or packed into TFDS records by
the `hdb_image_folder` builder (`hdb_jax/data/tfds_folder.py`, `manual_dir` = that folder).

- `world` / `world:held_out`: photos of world identities (`hdb_jax.world`, which registers the kind
  with `register_source`): `num_identities` x `views_per_identity` renders of the default scene
  ('a face': photo style, studio, no accessories). `world` reads the ids the world model trained on
  (0, 1, ...); `world:held_out` ids no world model, recognizer or hypernetwork trains on (from
  1,000,000 on). Identity ids 'world/0000000', ...

Every source yields `Example`s (identity id, stable index, a name for logs, a loader). `ListSource`s
(synthetic, folder) are lists with random access; a `TfdsSource` is streamed one epoch at a time.
"""

import abc
import dataclasses
import functools
import os
from typing import Any, Callable, Container, Iterator, Sequence

import ml_collections
import numpy as np

from hdb_jax.errors import UserError
from hdb_jax.io import images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
Loader = Callable[[int], np.ndarray]  # resolution -> float32 [resolution, resolution, 3] in [-1, 1]


class SourceError(UserError):
  """A source that cannot be read at all: unknown, empty, unprepared, or without one usable
  image."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One image of a source. `load(resolution)` raises images.ImageError for a bad file."""

  identity_id: str
  index: int  # stable position in the source
  name: str  # how logs name it (a path, a TFDS example)
  load: Loader


class ImageSource(abc.ABC):
  """A sequence of Examples that can be read one epoch (of one process's shard) at a time."""

  name: str

  @abc.abstractmethod
  def __len__(self) -> int:
    """Examples in the source (bad files included: they are only found when read)."""

  @abc.abstractmethod
  def epoch(
    self,
    epoch: int,
    *,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle: bool,
    start: int = 0,
  ) -> Iterator[Example | None]:
    """This process's examples of `epoch`, in order, from the `start`-th on.

    The shards of the processes 0..process_count-1 are disjoint and together cover the source; the
    order is a pure function of (seed, epoch, process_index, process_count). None stands for an
    example a filter removed: it still takes its place in the order, so positions do not depend on
    the filter.
    """

  def shard_size(self, process_index: int, process_count: int) -> int:
    """Examples in one epoch of this process's shard."""
    n = len(self)
    return n * (process_index + 1) // process_count - n * process_index // process_count


def epoch_seed(seed: int, epoch: int, process_index: int = 0) -> int:
  """A 32-bit seed for one epoch's shuffle, mixed from its parts (no collisions between nearby
  seeds)."""
  return int(
    np.random.SeedSequence([int(seed), int(epoch), int(process_index), 0x5EED]).generate_state(1)[0]
  )


class ListSource(ImageSource):
  """A source held as a list. Per epoch, one permutation of the whole source (from seed and epoch)
  is dealt out round-robin: process p reads positions p, p + P, p + 2P, ... of it."""

  def __init__(self, name: str, examples: Sequence[Example]):
    self.name = name
    self.examples = list(examples)

  def __len__(self) -> int:
    return len(self.examples)

  def shard_size(self, process_index: int, process_count: int) -> int:
    return len(range(process_index, len(self.examples), process_count))

  def order(self, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    n = len(self.examples)
    return (
      np.random.default_rng(epoch_seed(seed, epoch)).permutation(n) if shuffle else np.arange(n)
    )

  def epoch(
    self,
    epoch: int,
    *,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle: bool,
    start: int = 0,
  ) -> Iterator[Example]:
    shard = self.order(epoch, seed, shuffle)[process_index::process_count]
    for i in shard[start:]:
      yield self.examples[int(i)]


def list_image_files(root: str) -> list[str]:
  """Paths relative to root ('/'-separated, sorted) of the image files below it; hidden entries
  skipped."""
  found = []
  for directory, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    for name in files:
      if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
  return sorted(found)


def folder_source(
  root: str,
  *,
  identity_from_subfolder: bool = False,
  min_size: int = 64,
  upscale: bool = True,
  crop: images.CropFn | None = None,
) -> ListSource:
  """Every image file below `root`. Bad files are found (and skipped by the pipeline) when read."""
  if not os.path.isdir(root):
    raise SourceError(f"folder source {root!r}: no such directory")
  files = list_image_files(root)
  if not files:
    raise SourceError(
      f"folder source {root!r}: no {'/'.join(IMAGE_EXTENSIONS)} files in it or below it"
    )
  if identity_from_subfolder:
    loose = [f for f in files if "/" not in f]
    if loose:
      raise SourceError(
        f"folder source {root!r}: identity_from_subfolder is set but {len(loose)} files lie "
        "directly "
        f"in it (e.g. {loose[0]!r}); put each identity's photos in its own sub-folder"
      )
  examples = []
  for index, relpath in enumerate(files):
    path = os.path.join(root, relpath)
    identity = relpath.rpartition("/")[0] if identity_from_subfolder else relpath
    load = functools.partial(_load_file, path, min_size=min_size, upscale=upscale, crop=crop)
    examples.append(Example(identity_id=identity, index=index, name=path, load=load))
  return ListSource(f"folder:{root}", examples)


def _load_file(
  path: str, resolution: int, *, min_size: int, upscale: bool, crop: images.CropFn | None
) -> np.ndarray:
  return images.load_image(path, resolution, min_size=min_size, upscale=upscale, crop=crop)


def _load_bytes(
  data: bytes,
  name: str,
  resolution: int,
  *,
  min_size: int,
  upscale: bool,
  crop: images.CropFn | None,
) -> np.ndarray:
  return images.load_image(
    data, resolution, min_size=min_size, upscale=upscale, name=name, crop=crop
  )


def import_tensorflow() -> tuple[Any, Any]:
  """(tensorflow, tensorflow_datasets), imported on first use, with TensorFlow kept off GPUs and
  TPUs."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SourceError("tfds: sources need TensorFlow Datasets: pip install -e '.[data]'") from e
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):
    pass  # already initialised (by an earlier call), or no such device type
  return tf, tfds


class TfdsSource(ImageSource):
  """A TFDS split streamed with tf.data. Process p reads the contiguous slice
  [N p / P, N (p + 1) / P) of the split; each epoch shuffles it with a buffer (seeded per epoch and
  process). Images stay encoded in tf.data and are decoded by `images.load_image` like every other
  source."""

  def __init__(
    self,
    name: str,
    *,
    split: str = "train",
    image_key: str = "image",
    identity_key: str | None = None,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    prepare: bool = False,
    shuffle_buffer: int = 1024,
    min_size: int = 64,
    upscale: bool = True,
    crop: images.CropFn | None = None,
  ):
    self._tf, self._tfds = import_tensorflow()
    self.name = f"tfds:{name}"
    self.split, self.image_key, self.identity_key = split, image_key, identity_key
    self.shuffle_buffer = shuffle_buffer
    self._load_options = dict(min_size=min_size, upscale=upscale, crop=crop)
    try:
      self.builder = self._tfds.builder(name, data_dir=data_dir)
    # pylint: disable=broad-except  (TFDS raises several kinds for an unknown name)
    except Exception as e:
      raise SourceError(
        f"{self.name}: no such TFDS dataset or config ({type(e).__name__}: {e})"
      ) from e
    if not self.builder.is_prepared():
      if not prepare:
        raise SourceError(
          f"{self.name}: not prepared in {self.builder.data_dir}; build it once with `tfds build "
          f"{name} "
          f"--data_dir=<data_dir> [--manual_dir=<dir>]` (see hdb_jax/data/sources.py for "
          "CelebA-HQ) or set "
          "config.data.prepare=True (with config.data.manual_dir where the dataset needs a manual "
          "download)"
        )
      download_config = self._tfds.download.DownloadConfig(manual_dir=manual_dir)
      self.builder.download_and_prepare(download_config=download_config)
    features = self.builder.info.features
    for key in (image_key, identity_key):
      if key is not None and key not in features:
        raise SourceError(f"{self.name}: no feature {key!r}; it has {sorted(features.keys())}")
    if split not in self.builder.info.splits:
      raise SourceError(
        f"{self.name}: no split {split!r}; it has {sorted(self.builder.info.splits.keys())}"
      )
    self._size = int(self.builder.info.splits[split].num_examples)

  def __len__(self) -> int:
    return self._size

  def epoch(
    self,
    epoch: int,
    *,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle: bool,
    start: int = 0,
  ) -> Iterator[Example]:
    tf, tfds = self._tf, self._tfds
    lo, hi = (
      self._size * process_index // process_count,
      self._size * (process_index + 1) // process_count,
    )
    if hi <= lo or start >= hi - lo:
      return
    ds = self.builder.as_dataset(
      split=f"{self.split}[{lo}:{hi}]",
      shuffle_files=False,
      decoders={self.image_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(try_autocache=False),
    )
    image_key, identity_key = self.image_key, self.identity_key
    ds = ds.enumerate(start=lo).map(
      lambda i, ex: (i, ex[image_key], ex[identity_key] if identity_key else i),
      num_parallel_calls=None,
    )
    if shuffle:
      ds = ds.shuffle(
        min(self.shuffle_buffer, hi - lo),
        seed=epoch_seed(epoch=epoch, seed=seed, process_index=process_index),
        reshuffle_each_iteration=False,
      )
    if start:
      ds = ds.skip(start)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    for index, encoded, identity in ds.as_numpy_iterator():
      index = int(index)
      if identity_key is None:
        identity_id = f"{self.split}[{index}]"
      elif isinstance(identity, bytes):
        identity_id = identity.decode("utf-8")
      else:
        identity_id = str(identity.item() if hasattr(identity, "item") else identity)
      name = f"{self.name} {self.split}[{index}]" + (
        f" ({identity_key}={identity_id!r})" if identity_key else ""
      )
      load = functools.partial(_load_bytes, encoded, name, **self._load_options)
      yield Example(identity_id=identity_id, index=index, name=name, load=load)


class FilteredSource(ImageSource):
  """The examples of `source` whose identity id is in `identity_ids` (shards and order kept)."""

  def __init__(self, source: ImageSource, identity_ids: Container[str]):
    self.source, self.identity_ids = source, identity_ids
    self.name = f"{source.name} (paired)"

  def __len__(self) -> int:
    return len(self.source)  # an upper bound for streamed sources

  def epoch(
    self,
    epoch: int,
    *,
    process_index: int,
    process_count: int,
    seed: int,
    shuffle: bool,
    start: int = 0,
  ) -> Iterator[Example | None]:
    stream = self.source.epoch(
      epoch,
      process_index=process_index,
      process_count=process_count,
      seed=seed,
      shuffle=shuffle,
      start=start,
    )
    for example in stream:
      yield example if example is not None and example.identity_id in self.identity_ids else None


# kind -> factory(argument after ':', data config): sources of layers above this one (the world)
SourceFactory = Callable[[str, ml_collections.ConfigDict], ImageSource]
_REGISTERED: dict[str, SourceFactory] = {}
_USAGE: dict[str, str] = {}  # kind -> how error messages show it


def register_source(kind: str, factory: SourceFactory, usage: str | None = None) -> None:
  """Makes `config.data.source='<kind>[:<argument>]'` call factory(argument, data_config); usage:
  how error messages show the kind (default '<kind>[:...]')."""
  if kind in ("folder", "tfds"):
    raise ValueError(f"source kind {kind!r} is built in")
  _REGISTERED[kind] = factory
  _USAGE[kind] = usage or f"{kind}[:...]"


def make_source(
  data_config: ml_collections.ConfigDict, *, crop: images.CropFn | None = None
) -> ImageSource:
  """The source `data_config.source` names ('synthetic', 'folder:<path>' or
  'tfds:<name>[/<config>]').

  crop: an optional crop hook (e.g. a face detector returning a square box) instead of the centre
  crop.
  """
  spec = str(data_config.source)
  options = dict(min_size=int(data_config.min_size), upscale=bool(data_config.upscale), crop=crop)
  kind, _, argument = spec.partition(":")
  if kind in _REGISTERED:
    return _REGISTERED[kind](argument, data_config)
  if kind == "folder" and argument:
    return folder_source(
      os.path.expanduser(argument),
      identity_from_subfolder=bool(data_config.identity_from_subfolder),
      **options,
    )
  if kind == "tfds" and argument:
    return TfdsSource(
      argument,
      split=data_config.split,
      image_key=data_config.image_key,
      identity_key=data_config.identity_key,
      data_dir=data_config.data_dir,
      manual_dir=data_config.manual_dir,
      prepare=bool(data_config.prepare),
      shuffle_buffer=int(data_config.shuffle_buffer),
      **options,
    )
  registered = "".join(f"'{_USAGE[k]}', " for k in sorted(_REGISTERED))
  raise SourceError(
    f"config.data.source={spec!r}: expected {registered}'folder:<path>' or "
    "'tfds:<name>[/<config>]'"
    + (
      ""
      if "world" in _REGISTERED
      else " (or 'synthetic' and 'world' once hdb_jax.world is imported)"
    )
  )
