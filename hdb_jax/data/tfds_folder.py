"""A TFDS dataset built from a folder of images, `tfds:hdb_image_folder` (imports TFDS).

Packs a folder (the same files a `folder:` source reads) into TFDS record files once, e.g. to stream
a big collection from a bucket on TPU hosts, and drives the tfds: path in tests and benchmarks. The
file bytes are stored as they are (decoding, and skipping bad files, happen when read).

    import hdb_jax.data.tfds_folder  # registers the builder
    config.data.source = 'tfds:hdb_image_folder'
    config.data.manual_dir = '<folder>'; config.data.data_dir = '<data_dir>'
    config.data.prepare = True
    config.data.identity_key = 'identity'   # the file's sub-folder ('' for files at the top)
"""

import os

import tensorflow_datasets as tfds

from hdb_jax.data.sources import list_image_files


class HdbImageFolder(tfds.core.GeneratorBasedBuilder):
  """Every .jpg/.jpeg/.png/.webp file below manual_dir, in one 'train' split, in file-name order."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "manual_dir: the folder of image files (one sub-folder per identity, optionally)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "identity": tfds.features.Text(),
          "filename": tfds.features.Text(),
        }
      ),
      description=__doc__.split("\n", 1)[0],
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {"train": self._generate_examples(os.fspath(dl_manager.manual_dir))}

  def _generate_examples(self, root: str):
    for relpath in list_image_files(root):
      with open(os.path.join(root, relpath), "rb") as f:
        data = f.read()
      yield relpath, {"image": data, "identity": relpath.rpartition("/")[0], "filename": relpath}
