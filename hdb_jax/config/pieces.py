"""Config pieces shared by the phases, each defined once: the base model and adapters, the data, the
optimizer, prior preservation, Phase 0's training settings, and the variant parser.

hdb_jax.config.phases composes them into each phase's config; configs/*.py are the files users pass
with --config and document each variant.
"""

from typing import Sequence

import ml_collections
from ml_collections import config_dict

import hdb_jax.world  # noqa: F401  (registers the 'world' data source for every phase's config)
from hdb_jax.adapters.targets import DEFAULT_TARGETS
from hdb_jax.errors import ConfigError

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def parse_variant(variant: str, variants: Sequence[str] = ("", "tiny")) -> str:
  """The variant after `file.py:` (`configs/hyper.py:tiny` -> 'tiny'), checked against the file's
  variants."""
  if variant not in variants:
    raise ConfigError(
      f"unknown config variant {variant!r} (use one of {', '.join(repr(v) for v in variants)})"
    )
  return variant


def data_config() -> ml_collections.ConfigDict:
  """`config.data` of every phase; see hdb_jax/data/sources.py for what each source reads."""
  return ml_collections.ConfigDict(
    dict(
      source="synthetic",  # 'synthetic' | 'folder:<path>' | 'tfds:<name>[/<config>]' | 'world'
      # tfds: sources
      image_key="image",
      # a feature naming the identity; None: '<split>[<index>]'
      identity_key=config_dict.placeholder(str),
      split="train",
      data_dir=config_dict.placeholder(str),  # TFDS data_dir (None: ~/tensorflow_datasets)
      # manual downloads (celeb_a_hq: the data<R>x<R>.tar files)
      manual_dir=config_dict.placeholder(str),
      prepare=False,  # build an unprepared TFDS dataset on first use
      shuffle_buffer=1024,  # tf.data shuffle buffer (encoded images) per process
      # synthetic source
      num_identities=8,
      views_per_identity=4,
      seed=0,  # the synthetic identities (the shuffle seed is the run's)
      # folder: source
      identity_from_subfolder=False,
      # every source
      min_size=64,  # smaller images are skipped as bad
      upscale=True,  # images between min_size and the resolution are upscaled (with a warning)
      shuffle=True,
      num_workers=2,  # decoding threads
      augment=False,  # colour jitter (hypernetwork training)
      flip=False,  # with augment: also mirror left-right; refused beside Phase 0 weights
      color_jitter=0.05,
    )
  )


def optimizer_config(learning_rate: float, **overrides) -> ml_collections.ConfigDict:
  """Fields of hdb_jax.engine.optimizers.make_optimizer: Adam at a constant rate, clipped at norm
  1."""
  fields = dict(
    optimizer="adam",
    learning_rate=learning_rate,
    weight_decay=0.0,
    grad_clip=1.0,
    schedule="constant",
    warmup_steps=0,
  )
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ConfigError(
      f"unknown optimizer field(s) {sorted(unknown)}; the fields are {sorted(fields)}"
    )
  return ml_collections.ConfigDict({**fields, **overrides})


def prior_config(tiny: bool) -> ml_collections.ConfigDict:
  """DreamBooth prior preservation (hdb_jax/diffusion/prior.py); off by default."""
  return ml_collections.ConfigDict(
    dict(
      weight=0.0,  # off; DreamBooth uses 1.0
      class_prompt="a face",
      # drawn by the base model, or a data source: 'synthetic', 'folder:<path>', ...
      source="generate",
      num_images=4 if tiny else 100,
      sample_steps=4 if tiny else 25,
      guidance=7.5,
    )
  )


def base_config(variant: str) -> ml_collections.ConfigDict:
  """Fields read by hdb_jax.diffusion.base.setup_base_model, for SD1.5 or (variant 'tiny') the tiny
  model."""
  tiny, world = variant == "tiny", variant == "world"
  config = ml_collections.ConfigDict()
  # hub id, local diffusers dir, 'tiny[:DIR]', or 'world' (the shipped world model)
  config.pretrained = "tiny" if tiny else ("world" if world else SD15)
  config.revision = ml_collections.config_dict.placeholder(str)
  # frozen model's compute; trainables stay fp32
  config.compute_dtype = "float32" if tiny or world else "bfloat16"
  # the UNet's attention kernel: einsum | chunked | dot_product | flash | auto (flash on TPU and
  # GPU, einsum on CPU; hdb_jax.models.attention, compared in configs/hyper.py's docstring)
  config.attention = "einsum" if tiny or world else "auto"
  # the UNet's per-block remat in training losses: none | full | dots (hdb_jax.models.remat;
  # Phase 1 on SD1.5 uses dots; Phase 0 / Phase 2 can trade compute for identities per chip)
  config.remat = "none"
  config.targets = list(DEFAULT_TARGETS)
  config.lidb = ml_collections.ConfigDict(
    dict(a=100, b=50, rank=1, aux_seed=0, aux_scale=1.0, a_init_std=1.0, b_init_std=1e-3)
  )
  config.token = "sks"
  config.prompt = "a {token} face"
  config.seed = 0
  config.compilation_cache = True
  config.compilation_cache_dir = ""  # empty: ~/.cache/hdb_jax/jax_cache
  config.data = data_config()
  config.prior = prior_config(tiny or world)
  if world:
    config.data.source = "world"
  elif not tiny:
    config.data.source = "tfds:celeb_a_hq/512"
  return config


# what every phase shares (Phase 1 hands them to Phase 0)
BASE_FIELDS = tuple(base_config("tiny").keys())


def preoptimize_settings(variant: str) -> ml_collections.ConfigDict:
  """Phase 0's own fields (beside base_config): how many faces, how many per step, steps,
  optimizer."""
  tiny, world = variant == "tiny", variant == "world"
  settings = ml_collections.ConfigDict(
    dict(
      num_identities=8 if tiny else 0,  # 0: every identity of the source
      identities_per_step=4 if tiny else 16,
      steps=60 if tiny else 400,
      final_loss_window=10,  # the recorded final loss: mean over the last steps (per identity)
      optim=optimizer_config(3e-2 if tiny else 5e-3),
    )
  )
  if world:
    settings.update(num_identities=1024, identities_per_step=32, steps=150)
    settings.optim.learning_rate = 1e-2
  return settings


def personalization_config(variant: str) -> ml_collections.ConfigDict:
  """base_config plus what Phase 2 personalization and its sampling read (personalize and
  evaluate)."""
  tiny, world = variant == "tiny", variant == "world"
  config = base_config(variant)
  config.image = ""  # the photo to personalize
  config.images = ""  # or several: comma-separated files, or a folder
  # hypernetwork checkpoint dir, 'world' (the shipped world hypernetwork, hdb_jax/assets/
  # world-hypernet), or 'none' (DreamBooth from scratch)
  config.hypernet = "world" if world else "none"
  config.baseline = "lidb"  # without a hypernetwork: train 'lidb' or 'lora' from scratch
  # r': ranks the finetune adds on top of the prediction (and the rank of the 'lora' baseline)
  config.lora_rank = 4
  # the rank relaxation: 'lora' (a rank-r' LoRA, the paper's) or 'lidb' (r' more LiDB ranks
  # through the same frozen bases: (1 + r') x 28,800 numbers on SD1.5, 11x fewer than LoRA's)
  config.relaxation = "lora"
  config.steps = 40
  config.optim = optimizer_config(3e-2 if tiny else 1e-3)
  if world:
    # Chosen on 16 validation identities x 12 prompts (world v2, its hypernetwork; benchmarks/
    # world_tables.py --split=validation --tune --tune_method=full, lr 3e-3 / 1e-2 / 3e-2 x 20 / 40
    # / 80 steps; the rule: the highest World-ID among settings with World-prompt >= 0.88). LiDB
    # relaxation: lr 1e-2, 80 steps, World-ID 0.414, World-prompt 0.894; LoRA relaxation's pick
    # (lr 3e-3, 80 steps) 0.393 / 0.918; lr 3e-2 breaks the prompt (World-prompt 0.50-0.79).
    # The compact relaxation wins by the rule (within noise: intervals +-0.1), so it is the
    # world's default. SD1.5 keeps the paper's LoRA relaxation until measured there.
    config.optim.learning_rate = 1e-2
    config.steps = 80
    config.relaxation = "lidb"
  config.num_samples = 1 if tiny else 2
  config.sample_steps = 4 if tiny else 25
  config.guidance = 7.5  # the world model's too (hdb_jax.world.quality.QUALITY_SAMPLING)
  config.sampler = "ddim"
  config.overwrite = False
  return config
