"""Stable Diffusion with adapters: the frozen base model (base), the training loss (loss), sampling,
generation with identities (generation) and DreamBooth prior preservation (prior)."""
