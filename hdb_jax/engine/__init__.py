"""The per-example adapter training engine (trainer) and optimizers from config (optimizers): Phase
0, the from-scratch baselines and the rank-relaxed finetune all train through it."""
