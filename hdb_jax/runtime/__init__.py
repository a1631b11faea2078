"""Plumbing every command shares: flags and one-line errors (cli), the start-of-run log (overview),
the Flax deprecation silencing (quiet), the device mesh (mesh), the compilation cache, training
metrics to JSONL/TensorBoard (metrics_log)."""
