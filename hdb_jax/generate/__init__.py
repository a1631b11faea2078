"""python -m hdb_jax.generate: images from identity files (the library call:
hdb_jax.diffusion.generation)."""
