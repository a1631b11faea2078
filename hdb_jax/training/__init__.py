"""Diffusion training: the loss, optimizers, and the per-example adapter training engine."""
