"""Evaluation (python -m hdb_jax.evaluate, configs/evaluate.py): the paper's metrics (CLIP-T,
CLIP-I, DINO, Face Rec: metrics, faces), the prompt set (prompts), the comparison modes (methods),
the run (loop) and the HTML report (report)."""
