"""Phase 2 (python -m hdb_jax.personalize, configs/personalize.py): photos to identities. step: the
prediction and the jitted rank-relaxed finetune of a batch of photos; loop: files in, identity
files, samples, exports and records out."""
