"""Each phase's jitted programs, built by the phase's own code over abstract parameters and inputs.

    programs = PHASES["hyper"](config, devices)   # [Program], ready for analysis.measure

Nothing is read but configs and tokenizers (setup_base_model(abstract=True), abstract encoders):
every parameter, optimizer state and input is a jax.ShapeDtypeStruct placed as the phase places it.
Phase 1 and the world pretraining run on a mesh of all the devices (config.mesh); Phase 0, Phase 2
and generation run on one device, as their loops do.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import SingleDeviceSharding

from hdb_jax import adapters, models
from hdb_jax.aot.analysis import Program
from hdb_jax.aot.placement import placed, shape_of
from hdb_jax.diffusion.base import BaseModel, setup_base_model
from hdb_jax.diffusion.prior import ClassPrior
from hdb_jax.diffusion.sampling import SamplingConfig, make_sampler
from hdb_jax.engine.trainer import lidb_trainer, run_inputs
from hdb_jax.errors import ConfigError
from hdb_jax.formats.hypernet_card import config_from_card, read_card
from hdb_jax.formats.hypernet_loading import resolve_hypernet
from hdb_jax.hypernet.network import Hypernet, build_hypernet
from hdb_jax.models.functional import RARE_IDENTIFIERS
from hdb_jax.models.image_encoder import abstract_image_encoder
from hdb_jax.personalize.step import finetune_trainer, initial_trainable, trained_adapter
from hdb_jax.preoptimize.step import init_lidb_batch
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.train.loop import check_config as check_hyper_config
from hdb_jax.train.step import make_trainer
from hdb_jax.world.pretrain import step as world_step
from hdb_jax.world.pretrain.loop import check_config as check_world_config
from hdb_jax.world.pretrain.stages import stage_step
from hdb_jax.world.truth.scene import caption_words

Builder = Callable[..., list[Program]]


def _abstract_net(config: ml_collections.ConfigDict, base: BaseModel) -> Hypernet:
  """The hypernetwork of config.encoder / config.model with an abstract image encoder."""
  encoder = config.encoder
  return build_hypernet(
    config, base, abstract_image_encoder(encoder.pretrained, encoder.get("revision") or None)
  )


def _with_encoder(net: Hypernet, encoder_params: Any) -> Hypernet:
  return dataclasses.replace(net, encoder=dataclasses.replace(net.encoder, params=encoder_params))


def _traced(fn: Callable[[Hypernet, jax.Array], Any], net: Hypernet, base: BaseModel) -> Any:
  """jax.eval_shape of fn(net, theta [D]) with the (abstract) encoder params traced as an argument:
  a trainable encoder's params are part of what fn returns."""
  theta = jax.ShapeDtypeStruct((adapters.lidb_size(base.layers, base.lidb_config),), jnp.float32)
  return jax.eval_shape(lambda t, e: fn(_with_encoder(net, e), t), theta, net.encoder.params)


def train_programs(config: ml_collections.ConfigDict, devices: list[Any]) -> list[Program]:
  """Phase 1 (configs/hyper.py): the sharded, donating train step over config.mesh of devices."""
  check_hyper_config(config)
  if config.batch_size % len(devices):
    raise ConfigError(f"batch_size {config.batch_size} must divide over the {len(devices)} devices")
  base = setup_base_model(config, abstract=True)
  net = _abstract_net(config, base)
  trainer = make_trainer(config, base, net)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  state = _traced(
    lambda n, t: dataclasses.replace(trainer, net=n).initial_state(t), trainer.net, base
  )
  state_sharding, frozen_sharding = trainer.shardings(
    mesh, state, config.shard_frozen, config.shard_trainable
  )
  args = (
    placed(state, state_sharding),
    placed(trainer.frozen(), frozen_sharding),
    trainer.abstract_batch(config.batch_size, mesh),
  )
  step = trainer.jit_train_step(mesh, state_sharding, frozen_sharding)
  return [Program("phase1/train_step", step, args, units=config.batch_size, unit="images")]


def _latents(base: BaseModel, images: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
  encode = lambda vae_params, x: models.vae_encode(base.sd, vae_params, x)  # noqa: E731
  return jax.eval_shape(encode, base.sd.params["vae"], images)


def _prior(
  base: BaseModel, config: ml_collections.ConfigDict, latents: jax.ShapeDtypeStruct
) -> ClassPrior | None:
  """config.prior's class prior as shapes (its class images are never drawn), or None."""
  if not config.prior.weight:
    return None
  return ClassPrior(
    latents=jax.ShapeDtypeStruct((config.prior.num_images, *latents.shape[1:]), latents.dtype),
    input_ids=jax.ShapeDtypeStruct(base.prompt_ids.shape, jnp.int32),
    weight=jax.ShapeDtypeStruct((), jnp.float32),
  )


def preoptimize_programs(config: ml_collections.ConfigDict, devices: list[Any]) -> list[Program]:
  """Phase 0 (configs/lidb.py): one batch of identities_per_step LiDBs, `steps` steps scanned."""
  base = setup_base_model(config, abstract=True)
  device = SingleDeviceSharding(devices[0])
  count, size = config.identities_per_step, base.sd.resolution
  trainer = lidb_trainer(base, config.optim, config.steps)
  state = jax.eval_shape(lambda: trainer.init(init_lidb_batch(base, config.seed, range(count))))
  latents = _latents(base, jax.ShapeDtypeStruct((count, size, size, 3), jnp.float32))
  ids = jnp.arange(count, dtype=jnp.int32)
  args = run_inputs(base, None, latents, config.seed, ids, state, _prior(base, config, latents))
  run = trainer.make_run(config.steps)
  name = "phase0/lidb_batch"
  return [Program(name, run, placed(args, device), count, "identities", config.steps)]


def _hypernet_fields(
  config: ml_collections.ConfigDict, hypernet: ml_collections.ConfigDict | None
) -> ml_collections.ConfigDict | None:
  """The encoder + model fields of Phase 2's hypernetwork: `hypernet` (a Phase 1 config), else
  config.hypernet's card (never its weights), else None (no hypernetwork)."""
  if hypernet is not None:
    return hypernet
  if config.hypernet in ("", "none"):
    return None
  return config_from_card(read_card(resolve_hypernet(config.hypernet)))


def personalize_programs(
  config: ml_collections.ConfigDict,
  devices: list[Any],
  hypernet: ml_collections.ConfigDict | None = None,
  photos: int = 1,
) -> list[Program]:
  """Phase 2 (configs/personalize.py) for a batch of `photos`: the hypernetwork's prediction (with
  one: `hypernet`, a Phase 1 config, or config.hypernet's card), the scanned finetune, and the
  generation of one identity's samples (sample_prompts x num_samples images)."""
  base = setup_base_model(config, abstract=True)
  device = SingleDeviceSharding(devices[0])
  size = base.sd.resolution
  images = shape_of((photos, size, size, 3), jnp.float32, device)
  fields = _hypernet_fields(config, hypernet)
  programs, frozen = [], None
  if fields is not None:
    net = _abstract_net(fields, base)
    params = _traced(lambda n, t: n.init_params(jax.random.key(0), t), net, base)
    args = (placed(params, device), placed(net.encoder.params, device), images, None)
    programs.append(Program("phase2/predict", net.jitted_predict, args, photos, "photos"))
    packed = jax.eval_shape(net.predict, params, net.encoder.params, images)
    frozen = jax.eval_shape(lambda p, a: adapters.lidb_factors(net.unpack(p), a), packed, base.aux)
  kind, trained_lidb = trained_adapter(base, config, fields is not None)
  if fields is None or config.steps:
    trainer = finetune_trainer(base, config, trained_lidb)
    ids = np.arange(photos)  # a photo's id comes from its pixels; any ids compile the same
    state = jax.eval_shape(lambda: trainer.init(initial_trainable(base, config, trained_lidb, ids)))
    latents = _latents(base, images)
    args = run_inputs(
      base, frozen, latents, config.seed, jnp.asarray(ids), state, _prior(base, config, latents)
    )
    run = trainer.make_run(config.steps)
    programs.append(
      Program("phase2/finetune", run, placed(args, device), photos, "photos", config.steps)
    )
  if config.num_samples:
    rank = _identity_rank(base, config, fields is not None, kind)
    programs.append(_generation(base, config, rank, device))
  return programs


def _identity_rank(
  base: BaseModel, config: ml_collections.ConfigDict, hyper: bool, kind: str
) -> int:
  """The rank of the LoRA an identity of this config applies (LiDB + relaxation, or from
  scratch)."""
  if hyper:
    return base.lidb_config.rank + (config.lora_rank if config.steps else 0)
  return base.lidb_config.rank if kind == "lidb" else config.lora_rank


def _generation(
  base: BaseModel, config: ml_collections.ConfigDict, rank: int, device: Any
) -> Program:
  """One identity's samples (as the Phase 2 loop draws them): len(sample_prompts) x num_samples
  images in one sampler call, `sample_steps` denoising steps."""
  count = len(config.sample_prompts) * config.num_samples
  sampling = SamplingConfig(
    steps=config.sample_steps, guidance=config.guidance, sampler=config.sampler, seed=config.seed
  )
  factors = {
    layer.path: (
      shape_of((count, layer.n, rank), jnp.float32, device),
      shape_of((count, rank, layer.m), jnp.float32, device),
    )
    for layer in base.layers
  }
  ids = shape_of((count, base.prompt_ids.shape[1]), jnp.int32, device)
  noise_ids = shape_of((count,), jnp.int32, device)
  args = (placed(base.sd.params, device), factors, ids, ids, noise_ids)
  sampler = make_sampler(base.sd, sampling)
  return Program("generate", sampler, args, count, "images", config.sample_steps)


def world_programs(config: ml_collections.ConfigDict, devices: list[Any]) -> list[Program]:
  """The world pretraining (configs/world.py): the VAE stage's and the UNet stage's train steps
  over config.mesh of devices (a batch holds what their losses read: images, and the UNet stage's
  caption ids)."""
  check_world_config(config)
  words = tuple(caption_words()) + RARE_IDENTIFIERS
  sd = models.abstract_model_of(
    config.unet.to_dict(),
    config.vae.to_dict(),
    config.text_encoder.to_dict(),
    words=words,
    max_length=config.max_length,
    source="world",
  )
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  replicated, split = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  vae, unet = config.vae_stage, config.unet_stage
  stages = [
    ("world/vae_step", vae, sd.params["vae"], {}, world_step.vae_loss(sd, vae.kl_weight, vae.crop)),
    (
      "world/unet_step",
      unet,
      {"unet": sd.params["unet"], "text_encoder": sd.params["text_encoder"]},
      sd.params["vae"],
      world_step.unet_loss(sd),
    ),
  ]
  programs = []
  for name, settings, params, frozen, loss in stages:
    if settings.batch_size % len(devices):
      raise ConfigError(f"{name}: batch_size {settings.batch_size} must divide over the devices")
    step, state, sharding = stage_step(settings, params, loss, config.seed, mesh)
    size, count = config.resolution, settings.batch_size
    batch = {"image": shape_of((count, size, size, 3), jnp.float32, split)}
    if name == "world/unet_step":
      batch["input_ids"] = shape_of((count, config.max_length), jnp.int32, split)
    args = (placed(state, sharding), placed(frozen, replicated), batch)
    programs.append(Program(name, step, args, settings.batch_size, "images"))
  return programs


# configs/<name>.py -> its programs
PHASES: dict[str, Builder] = {
  "lidb": preoptimize_programs,
  "hyper": train_programs,
  "personalize": personalize_programs,
  "world": world_programs,
}
