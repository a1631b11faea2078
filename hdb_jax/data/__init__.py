"""Input pipelines: one interface for every phase, selected by `config.data.source`.

    config.data = hdb_jax.data.default_data_config()    # source='synthetic'
    with make_iterator(config.data, batch_size=8, resolution=512, process_index=0, process_count=1,
                       seed=0) as batches:
      batch = next(batches)

Modules: `images` (one file -> model input), `synthetic` (procedural faces), `sources` (synthetic,
folder:, tfds:, and the CelebA-HQ manual download steps), `pipeline` (sharding, shuffle, workers,
positions), `augment`, `paired` (Phase 0 weights joined with images by identity id).
TensorFlow is imported only when a tfds: source is made.
"""

import ml_collections
from ml_collections import config_dict

from hdb_jax.data.images import ImageError, load_image
from hdb_jax.data.paired import paired_examples, paired_source, stack_weights
from hdb_jax.data.pipeline import DataIterator, Position, make_iterator
from hdb_jax.data.sources import Example, ImageSource, ListSource, SourceError, make_source


def default_data_config() -> ml_collections.ConfigDict:
  """`config.data` of every phase; see hdb_jax/data/sources.py for what each source reads."""
  return ml_collections.ConfigDict(dict(
      source="synthetic",            # 'synthetic' | 'folder:<path>' | 'tfds:<name>[/<config>]'
      # tfds: sources
      image_key="image",
      identity_key=config_dict.placeholder(str),  # a feature naming the identity; None: '<split>[<index>]'
      split="train",
      data_dir=config_dict.placeholder(str),      # TFDS data_dir (None: ~/tensorflow_datasets)
      manual_dir=config_dict.placeholder(str),    # manual downloads (celeb_a_hq: the data<R>x<R>.tar files)
      prepare=False,                 # build an unprepared TFDS dataset on first use
      shuffle_buffer=1024,           # tf.data shuffle buffer (encoded images) per process
      # synthetic source
      num_identities=8,
      views_per_identity=4,
      seed=0,                        # the synthetic identities (the shuffle seed is the run's)
      # folder: source
      identity_from_subfolder=False,
      # every source
      min_size=64,                   # smaller images are skipped as bad
      upscale=True,                  # images between min_size and the resolution are upscaled (with a warning)
      face_crop=False,               # face-centred crop: needs a detector (none built in yet)
      shuffle=True,
      num_workers=2,                 # decoding threads
      augment=False,                 # colour jitter (hypernetwork training)
      flip=False,                    # with augment: also mirror left-right; refused beside Phase 0 weights
      color_jitter=0.05,
  ))


__all__ = [
    "ImageError", "load_image", "paired_examples", "paired_source", "stack_weights", "DataIterator", "Position",
    "make_iterator", "Example", "ImageSource", "ListSource", "SourceError", "make_source", "default_data_config",
]
