"""Phase 0 (python -m hdb_jax.preoptimize, configs/lidb.py): one LiDB per training face. step: the
batched LiDB training of a chunk of identities; loop: faces in, weights dataset out (resumable)."""
