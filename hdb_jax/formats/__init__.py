"""The file formats hdb_jax writes, each documented where it is defined: the identity file
(identity), the Phase 0 weights dataset (weights_dataset), the hypernetwork card (hypernet_card),
its orbax training checkpoints (train_checkpoint), the orbax-free export (hypernet_export), and
loading a predictor from either (hypernet_loading). PyTorch formats (diffusers, kohya, merged) are
hdb_jax.export."""
