"""Each phase's whole config, composed from hdb_jax.config.pieces: what configs/*.py return.

The package owns them (not configs/) so that library code that needs a phase's config (Phase 1's
weights='auto' runs Phase 0, the demo runs every phase) works from a plain `pip install .`; the
files in configs/ are what users pass with --config, and their docstrings give each variant's
command and measured result.
"""

import ml_collections

from hdb_jax.config.pieces import (
  BASE_FIELDS,
  base_config,
  optimizer_config,
  personalization_config,
  preoptimize_settings,
)

HYPER_VARIANTS = ("", "tiny", "sd15_16gb", "world")
# variants of the phases besides Phase 1: SD1.5, the tiny random model, the world model
PHASE_VARIANTS = ("", "tiny", "world")


def preoptimize_config(variant: str) -> ml_collections.ConfigDict:
  """Phase 0 (configs/lidb.py): base_config + preoptimize_settings."""
  config = base_config(variant)
  config.update(preoptimize_settings(variant))
  config.data.num_identities = config.num_identities or 8
  config.data.views_per_identity = 1
  return config


def phase0_of(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The Phase 0 config that makes a Phase 1 config's targets (weights='auto'): the same base model,
  adapters, prompt, seed and data as Phase 1, and Phase 1's `phase0` settings."""
  phase0 = ml_collections.ConfigDict({key: config[key] for key in BASE_FIELDS})
  phase0.update(config.phase0)
  phase0.num_identities = config.data.num_identities
  return phase0


def hyper_config(variant: str) -> ml_collections.ConfigDict:
  """Phase 1 (configs/hyper.py): the hypernetwork, its losses, the mesh, checkpoints and
  evaluation."""
  tiny = variant == "tiny"
  base_variant = variant if variant in ("tiny", "world") else ""
  config = base_config(base_variant)
  # Phase 0 weights dataset dir; 'auto': run Phase 0 into WORKDIR/phase0
  config.weights = "auto" if tiny else ""
  # Phase 0's settings when weights='auto'
  config.phase0 = preoptimize_settings(base_variant)
  config.encoder = ml_collections.ConfigDict(
    dict(
      # ViT-H/14 as in the paper
      pretrained="tiny-vit" if tiny else "google/vit-huge-patch14-224-in21k",
      revision=ml_collections.config_dict.placeholder(str),
      trainable=False,
    )
  )
  config.model = ml_collections.ConfigDict(
    dict(
      d_model=64 if tiny else 768,
      num_heads=4 if tiny else 12,
      depth=2,
      mlp_dim=128 if tiny else 3072,
      refine_steps=3,  # s: iterative refinement steps (1 = the paper's k=1 ablation)
      head_init_std=1e-3,
    )
  )
  config.alpha = 1.0  # diffusion loss weight (the per-example MSE, ~0.1-1)
  # Weight-space loss weight on ||θ̂ - θ*||², the squared L2 norm over all D LiDB numbers (the
  # paper's term; D = 28,800 on SD1.5's default layers). At 1 it matters: on :tiny (D = 12,224) it
  # starts at ~600 beside a diffusion loss of ~0.9 and falls to 0.015 in 300 steps (weight MSE
  # 1.2e-6), measured with `python -m hdb_jax.train --config=configs/hyper.py:tiny
  # --config.steps=300 --config.eval.every=0 --config.batch_size=4`; at the default batch 8 on 8
  # devices, 200 steps: 0.0077 (held out: 1,115).
  config.beta = 1.0
  # global: split over processes and devices (8: 1 per device on 8)
  config.batch_size = 8 if tiny else 64
  config.steps = 200 if tiny else 50_000
  config.optim = optimizer_config(
    1e-3 if tiny else 1e-4,
    optimizer="adamw",
    weight_decay=1e-4,
    schedule="cosine",
    warmup_steps=10 if tiny else 1000,
  )
  config.mesh = (-1, 1)  # ('data', 'fsdp') sizes; -1 = the remaining devices
  config.shard_frozen = False  # split large frozen base weights on 'fsdp'
  # split large trainables and their optimizer state on 'fsdp' (a trainable ViT-H: 632M numbers,
  # 10 GB with Adam's moments in float32, more than a 16 GB chip holds beside SD1.5)
  config.shard_trainable = False
  # the UNet's per-block remat in the diffusion loss: none | full | dots (hdb_jax.models.remat;
  # "dots" keeps the projections and recomputes the rest, the least compiled SD1.5 memory)
  config.remat = "none" if tiny else "dots"
  config.log_every = 10 if tiny else 50
  config.checkpoint_every = 50 if tiny else 1000
  config.keep_checkpoints = 3
  config.async_checkpoint = True
  config.max_nonfinite_steps = 10  # stop after this many steps in a row with a NaN/inf loss
  config.tensorboard = True
  config.eval = ml_collections.ConfigDict(
    dict(
      every=100 if tiny else 2000,  # 0: never
      num_identities=2 if tiny else 64,  # held out of training (chosen by a hash of the id)
      samples=True,
      sample_steps=4 if tiny else 25,
      guidance=7.5,
    )
  )
  # jax.distributed.initialize() discovers TPU pods / SLURM by itself
  config.distributed = ml_collections.ConfigDict(
    dict(
      coordinator_address="",
      num_processes=0,
      process_id=-1,  # or JAX_COORDINATOR_ADDRESS etc.
      auto=not tiny,
    )
  )
  config.data.augment = not tiny
  config.data.views_per_identity = 1
  if tiny:
    config.data.num_identities = 10
  if variant == "sd15_16gb":
    config.batch_size = 8
    config.mesh = (-1, 2)
    config.shard_frozen = True
    config.shard_trainable = True
  if variant == "world":
    _world_hypernet(config)
  return config


def _world_hypernet(config: ml_collections.ConfigDict) -> None:
  """Phase 1 on the world model: Phase 0 over 1,024 world identities first (weights='auto'); the
  image encoder is the world recognizer's frozen World-ID CNN (no pretrained ViT exists offline; a
  64 px ViT trained from scratch, 'world-vit', learned no identity in 500 steps), CPU-sized."""
  config.weights = "auto"
  config.data.num_identities = config.phase0.num_identities
  config.encoder.pretrained, config.encoder.trainable = "world-recognizer", False
  config.model.update(d_model=128, num_heads=4, depth=2, mlp_dim=256)
  config.batch_size = 32
  # The diffusion loss alone (beta 0): Phase 0's weights differ between identities mostly in ways
  # that are not the identity (README, "HyperDreamBooth on the world"), so the weight loss teaches
  # their mean; they still give the prediction's starting point (theta_init, their mean).
  config.beta = 0.0
  # 2,000 steps (65 epochs of the 992 training identities): ~30 min on 2 free cores at ~0.8 s/step
  config.steps = 2000
  config.optim.update(learning_rate=1e-3, warmup_steps=200)
  config.remat = "none"
  config.log_every = 25
  config.checkpoint_every = 250
  config.eval.update(every=500, num_identities=32, sample_steps=25, guidance=7.5)
  config.distributed.auto = False


def personalize_config(variant: str) -> ml_collections.ConfigDict:
  """Phase 2 (configs/personalize.py): personalization_config + the sample prompts and the
  export."""
  config = personalization_config(variant)
  config.sample_prompts = [
    "a {token} face",
    "a {token} face as a rock star",
    "a {token} face in impressionist style",
  ]
  config.export = "diffusers"  # '' to skip; diffusers|kohya|merged
  return config


def evaluate_config(variant: str) -> ml_collections.ConfigDict:
  """Evaluation (configs/evaluate.py): the methods, prompts, samples and scoring models."""
  tiny, world = variant == "tiny", variant == "world"
  config = personalization_config(variant)
  config.baseline = "lora"  # every from-scratch method here trains a LoRA of rank lora_rank
  # finetune steps of full, k1 and no_hyper: the paper's 40, or the world's tuned personalization
  # steps (80), so that `full` measures what personalizing does
  if not world:
    config.steps = 20 if tiny else 40
  # comma-separated: full, only_hyper, no_hyper, k1, lora@N (N steps; several allowed)
  config.methods = (
    "no_hyper,lora@40" if tiny else "full,only_hyper,no_hyper,k1,lora@40,lora@400,lora@1200"
  )
  # a set of evaluate/prompts.py, or 'p1|p2' (each with {token})
  config.prompts = "tiny" if tiny else "all"
  config.num_samples = 1 if tiny else 4
  config.sample_batch = 2 if tiny else 16  # images per sampling call (prompts x samples)
  config.identities_per_batch = 1 if tiny else 8  # photos personalized together
  # hub id, local dir, tiny-clip[:DIR]
  config.clip_model = "tiny-clip" if tiny else "openai/clip-vit-base-patch32"
  # hub id, local dir, tiny-dino[:DIR]
  config.dino_model = "tiny-dino" if tiny else "facebook/dino-vits16"
  config.face_rec = True  # dlib face descriptors (the `face` extra); False to skip Face Rec
  config.face_upsample = (
    1  # dlib detector upsampling: 1 finds faces from ~40 px; 0 from ~80 px, ~3x faster
  )
  config.embed_batch = 8  # images per CLIP/DINO call
  # World-ID / World-prompt scoring: '' none; 'world' the shipped world recognizer
  # (hdb_jax/assets/world-recognizer); or a recognizer directory
  config.recognizer = ""
  # World-judge scoring (reported first): '' none; 'world' the shipped world judge
  # (hdb_jax/assets/world-judge); or a judge directory. Never the hypernetwork's encoder.
  config.judge = ""
  if world:
    # held-out world faces, scored by the world judge and recognizer; CLIP/DINO are random (none
    # offline)
    config.methods = "full,only_hyper,no_hyper,k1,lora@40,lora@200,lora@400"
    config.prompts = "world"
    config.recognizer = "world"
    config.judge = "world"
    config.clip_model, config.dino_model = "tiny-clip", "tiny-dino"
    config.face_rec = False  # dlib finds no faces in 64 px world renders
    config.sample_batch = 16
  return config
