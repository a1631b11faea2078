"""Files and images: atomic writes, format-tagged JSON (files), every image read and written
(images)."""
