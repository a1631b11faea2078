"""Phase 1 (python -m hdb_jax.train, configs/hyper.py): train the hypernetwork. step: the loss and
the jitted sharded step; loop: data, checkpoints, evaluation and metrics."""
