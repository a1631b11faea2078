"""Evaluation: the paper's metrics (CLIP-T, CLIP-I, DINO, Face Rec), the prompt set and the HTML report.

The command is `python -m hdb_jax.evaluate`; see hdb_jax/evaluate.py.
"""
