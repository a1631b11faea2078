"""Input pipelines: one interface for every phase, selected by `config.data.source`.

    config.data = hdb_jax.config.pieces.data_config()    # source='synthetic'
    with make_iterator(config.data, batch_size=8, resolution=512, process_index=0, process_count=1,
                       seed=0) as batches:
      batch = next(batches)

Modules: `sources` (folder:, tfds:, the registry that hdb_jax.world adds synthetic and world to, and
the CelebA-HQ manual download steps), `pipeline` (sharding, shuffle, workers,
positions), `augment`, `paired` (Phase 0 weights joined with images by identity id), `held_out`
(Phase 1's held-out identities). Every image is decoded by hdb_jax.io.images. TensorFlow is imported
only when a tfds: source is made.
"""

from hdb_jax.data.held_out import identity_images, split_identities
from hdb_jax.data.paired import paired_examples, paired_source, stack_weights
from hdb_jax.data.pipeline import DataIterator, Position, make_iterator
from hdb_jax.data.sources import Example, ImageSource, ListSource, SourceError, make_source

__all__ = [
  "identity_images",
  "split_identities",
  "paired_examples",
  "paired_source",
  "stack_weights",
  "DataIterator",
  "Position",
  "make_iterator",
  "Example",
  "ImageSource",
  "ListSource",
  "SourceError",
  "make_source",
]
