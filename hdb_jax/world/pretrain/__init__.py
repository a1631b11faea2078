"""Training the world model, from scratch or continuing a trained one: `data` (world renders and
captions per step), `step` (the VAE's and the UNet's losses and jitted steps), `loop` (stages,
checkpoints, samples), `history` (the runs a model's card records), `release` (the fp16 files
hdb_jax ships, with their card).

    python -m hdb_jax.world.pretrain --config=configs/world.py --workdir=/tmp/world
"""
