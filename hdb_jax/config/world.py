"""The world pretraining's config (hdb_jax.world.pretrain): architectures, the two stages (VAE,
then UNet with the text encoder), sampling while training. configs/world.py documents the
variants."""

import ml_collections

from hdb_jax.config.pieces import optimizer_config
from hdb_jax.errors import ConfigError
from hdb_jax.models import configs as arch
from hdb_jax.world.recognizer.network import ROLES
from hdb_jax.world.truth import sampling

WORLD_VARIANTS = ("", "toy")


def _stage(
  steps: int, batch_size: int, learning_rate: float, warmup: int, toy: bool
) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      steps=steps,
      batch_size=batch_size,  # global, split over the mesh's devices
      optim=optimizer_config(
        learning_rate, optimizer="adamw", weight_decay=1e-4, warmup_steps=warmup
      ),
      ema_decay=0.999,  # the shipped weights are the EMA's
      log_every=1 if toy else 25,
      checkpoint_every=2 if toy else 250,
      sample_every=4 if toy else 1000,  # a sample grid in WORKDIR/samples (0: never)
    )
  )


def _module(fields: dict) -> dict:
  """A module's config with its lists as tuples: ml_collections overrides tuple fields from the
  command line (--config.vae.block_out_channels='(32, 64, 64)'), not list ones."""
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def pretrain_config(variant: str) -> ml_collections.ConfigDict:
  """'' the shipped world model (64 px); 'toy' a few steps of a micro model (tests)."""
  toy = variant == "toy"
  config = ml_collections.ConfigDict()
  config.seed = 0  # initial weights, noise, timesteps
  config.data_seed = 0  # the world: which face each identity id is
  config.resolution = 32 if toy else arch.WORLD_RESOLUTION
  if toy:
    unet = {**arch.MICRO_UNET, "sample_size": 16, "cross_attention_dim": 32, "in_channels": 8,
            "out_channels": 8}  # fmt: skip
    vae = {**arch.WORLD_VAE, "block_out_channels": [32, 32], "sample_size": 32,
           "down_block_types": ["DownEncoderBlock2D"] * 2,
           "up_block_types": ["UpDecoderBlock2D"] * 2}  # fmt: skip
    text_encoder = {**arch.TINY_TEXT_ENCODER, "max_position_embeddings": 32}
  else:
    unet, vae, text_encoder = arch.WORLD_UNET, arch.WORLD_VAE, arch.WORLD_TEXT_ENCODER
  config.unet, config.vae = _module(unet), _module(vae)
  config.text_encoder = _module(text_encoder)
  config.max_length = arch.WORLD_MAX_LENGTH
  config.caption_dropout = 0.1  # empty captions, for classifier-free guidance
  # '' trains from random weights. A model ('world' or a diffusers directory of this architecture)
  # continues it instead: its VAE is kept (no VAE stage), its UNet and text encoder are the UNet
  # stage's start, and the data goes on past the UNet steps its card records.
  config.init_from = ""
  config.vae_stage = _stage(3 if toy else 2500, 4 if toy else 8, 1e-3, 1 if toy else 100, toy)
  # train on random patches of this side (>= resolution: whole images). 32 px patches cost a
  # quarter, but left artifacts at the borders of whole 64 px images after 2,000 steps.
  config.vae_stage.crop = 16 if toy else 64
  config.vae_stage.kl_weight = 1e-6  # per latent number, against the per-pixel L1 + MSE
  config.vae_stage.scale_batches = 1 if toy else 16  # batches to measure the latents' std on
  # Fold a per-channel normalization of the latents into the trained VAE (models.
  # center_vae_latents, measured on those batches) before the UNet stage: the shipped model's
  # scaled latents have per-channel means -0.93..1.11 (stds 0.48-1.10), which SD1.5's noise
  # schedule keeps 0.068 of at t = T, so its samples may lack them (a suspect for their skin
  # colour: README, "The world model"). Off: the shipped model was made without it.
  config.vae_stage.center_latents = False
  config.unet_stage = _stage(4 if toy else 3750, 4 if toy else 32, 3e-4, 1 if toy else 500, toy)
  # min-SNR-γ loss weighting (diffusion.loss.min_snr_weights; 0: the plain MSE of world v1)
  config.unet_stage.min_snr_gamma = 5.0
  config.sampling = ml_collections.ConfigDict(dict(steps=2 if toy else 25, guidance=7.5))
  config.mesh = (-1, 1)  # ('data', 'fsdp') sizes; -1 = the remaining devices
  config.keep_checkpoints = 2
  config.async_checkpoint = True
  config.tensorboard = True
  config.compilation_cache = True
  config.compilation_cache_dir = ""  # empty: ~/.cache/hdb_jax/jax_cache
  return config


def recognizer_config(variant: str, role: str = "recognizer") -> ml_collections.ConfigDict:
  """'' the shipped network of `role`; 'toy' a few steps (tests).

  role 'recognizer': World-ID (the hypernetwork's encoder) and World-prompt, plain CNNs, on the
  world model's training identities. role 'judge': World-ID that also reads the face's parameters,
  a residual CNN of another seed, on identities no other network trains on (sampling.JUDGE_*).
  """
  if role not in ROLES:
    raise ConfigError(f"role must be one of {sorted(ROLES)}, not {role!r}")
  toy = variant == "toy"
  judge = role == "judge"
  config = ml_collections.ConfigDict()
  config.role = role
  config.seed = 1 if judge else 0
  config.data_seed = 0  # the world
  # training identities: ids [first_identity, first_identity + num_identities), two renders of
  # each per batch
  config.first_identity = sampling.JUDGE_FIRST_IDENTITY if judge else 0
  config.num_identities = sampling.JUDGE_IDENTITIES if judge else sampling.TRAIN_IDENTITIES
  config.architecture = "resnet" if judge else "cnn"
  config.reads_prompt = not judge
  config.face_params = judge  # also regress the face's ground-truth parameters
  config.face_params_weight = 10.0  # against the contrastive loss (~1 after a few hundred steps)
  config.embedding_dim = 32 if toy else 128
  if toy:
    config.widths = (16, 16, 16, 16) if judge else (32, 32, 32, 32)
  else:
    config.widths = (32, 64, 128, 160) if judge else (32, 64, 96, 128)
  config.temperature = 0.1  # of the contrastive identity loss
  config.augment = True  # blur and noise, so that generated images read like renders
  config.recognizer_stage = _stage(4 if toy else 3000, 8 if toy else 64, 1e-3, 1 if toy else 100,
                                   toy)  # fmt: skip
  config.recognizer_stage.sample_every = 0
  config.eval = ml_collections.ConfigDict(
    dict(num_identities=8 if toy else 200, prompt_images=20 if toy else 1000)
  )
  config.mesh = (-1, 1)
  config.keep_checkpoints = 2
  config.async_checkpoint = True
  config.tensorboard = True
  config.compilation_cache = True
  config.compilation_cache_dir = ""
  return config
