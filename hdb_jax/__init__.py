"""hdb_jax: HyperDreamBooth in JAX/Flax.

Commands: `python -m hdb_jax.{preoptimize,train,personalize,generate,export,evaluate,demo}`. The
packages and their layers are listed in the README's "Layout" (tests/test_layout.py checks them).
"""

__version__ = "0.1.0"
