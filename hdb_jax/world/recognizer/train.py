"""Training the world recognizer: World-ID with a contrastive loss over pairs of renders of one
identity (InfoNCE against the rest of the batch: a CosFace classifier over 2,000 identities stayed
at chance for 800 steps here), World-prompt with one cross-entropy per attribute, both on renders
in random scenes and styles
(hdb_jax.world.pretrain.stages runs it: orbax-resumable, metrics, progress bar).

    result = train_recognizer(recognizer_config(''), '/tmp/recognizer')
"""

import dataclasses
import functools
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from hdb_jax.config.command import command_for
from hdb_jax.config.world import WORLD_VARIANTS, recognizer_config
from hdb_jax.errors import ConfigError
from hdb_jax.runtime import mesh as mesh_lib
from hdb_jax.runtime.compilation_cache import enable_compilation_cache
from hdb_jax.world.pretrain.data import WorldBatches
from hdb_jax.world.pretrain.stages import Stage, run_stage
from hdb_jax.world.recognizer import verification
from hdb_jax.world.recognizer.network import (
  RESOLUTION,
  ROLES,
  Recognizer,
  RecognizerSpec,
  init_params,
  normalize,
  save_recognizer,
  split_logits,
)
from hdb_jax.world.truth.faces import PARAM_NAMES

COMMAND = (
  "python -m hdb_jax.world.recognizer --config=configs/{role}.py{{variant}} --workdir=WORKDIR"
)


def augment(images: jax.Array, key: jax.Array) -> jax.Array:
  """Half the images blurred (down to half size and back), every one with Gaussian noise of a
  random std up to 0.08: generated images are softer and noisier than renders."""
  blur_key, std_key, noise_key = jax.random.split(key, 3)
  n, h, w, c = images.shape
  soft = jax.image.resize(jax.image.resize(images, (n, h // 2, w // 2, c), "linear"),
                          images.shape, "linear")  # fmt: skip
  blurred = jnp.where(jax.random.bernoulli(blur_key, 0.5, (n, 1, 1, 1)), soft, images)
  std = jax.random.uniform(std_key, (n, 1, 1, 1), maxval=0.08)
  return blurred + std * jax.random.normal(noise_key, images.shape)


def contrastive_identity_loss(
  embeddings: jax.Array, temperature: float
) -> tuple[jax.Array, jax.Array]:
  """(InfoNCE loss, accuracy) of unit embeddings [2N, D] whose rows 2k and 2k + 1 show one
  identity: each row must pick its partner among the other 2N - 1 (other identities, other
  scenes and styles, are the negatives)."""
  n = embeddings.shape[0]
  sims = jnp.where(jnp.eye(n, dtype=bool), -1e9, embeddings @ embeddings.T / temperature)
  partner = jnp.arange(n) ^ 1
  loss = optax.softmax_cross_entropy_with_integer_labels(sims, partner)
  return jnp.mean(loss), jnp.mean(jnp.argmax(sims, -1) == partner)


def face_params_loss(predicted: jax.Array, truth: jax.Array) -> jax.Array:
  """Mean squared error [] of predicted face parameters [N, NUM_PARAMS] in [0, 1] against the
  ground truth; a mole's position counts only on faces that have one."""
  mole = truth[:, PARAM_NAMES.index("mole")] > 0.5
  weight = jnp.ones_like(truth)
  for name in ("mole_x", "mole_y"):
    weight = weight.at[:, PARAM_NAMES.index(name)].set(mole.astype(truth.dtype))
  return jnp.sum(weight * jnp.square(predicted - truth)) / jnp.sum(weight)


def recognizer_loss(spec: RecognizerSpec, config: ml_collections.ConfigDict):
  """loss(params {'id'[, 'prompt']}, frozen (unused), batch of identity pairs, key): the
  contrastive identity loss, plus one cross-entropy per attribute (reads_prompt), plus
  config.face_params_weight x the face parameters' MSE (face_params)."""
  id_net, prompt_net = spec.networks()
  dim = spec.embedding_dim

  def loss(params, frozen, batch, key):
    del frozen
    images = augment(batch["image"], key) if config.augment else batch["image"]
    outputs = id_net.apply({"params": params["id"]}, images)
    embeddings = normalize(outputs[:, :dim])
    id_loss, id_accuracy = contrastive_identity_loss(embeddings, config.temperature)
    total, metrics = id_loss, {"id_loss": id_loss, "id_pair_accuracy": id_accuracy}
    if prompt_net is not None:
      logits = split_logits(prompt_net.apply({"params": params["prompt"]}, images))
      prompt_losses = [
        optax.softmax_cross_entropy_with_integer_labels(l, batch["attributes"][:, k])
        for k, l in enumerate(logits)
      ]
      metrics["prompt_loss"] = jnp.mean(sum(prompt_losses))
      total = total + metrics["prompt_loss"]
    if spec.face_params:
      metrics["face_loss"] = face_params_loss(
        jax.nn.sigmoid(outputs[:, dim:]), batch["face_params"]
      )
      total = total + config.face_params_weight * metrics["face_loss"]
    return total, metrics

  return loss


@dataclasses.dataclass
class RecognizerResult:
  directory: str  # WORKDIR/release: recognizer.safetensors, recognizer.json, MODEL_CARD.md
  recognizer: Recognizer
  evaluation: dict[str, Any]


def train_recognizer(config: ml_collections.ConfigDict, workdir: str) -> RecognizerResult:
  """Trains (or resumes) the recognizer in WORKDIR, evaluates it on held-out identities, and
  writes WORKDIR/release."""
  mesh_lib.initialize_distributed(config)
  if config.compilation_cache:
    enable_compilation_cache(config.compilation_cache_dir or None)
  spec = RecognizerSpec(embedding_dim=config.embedding_dim, widths=tuple(config.widths),
                        architecture=config.architecture, reads_prompt=config.reads_prompt,
                        face_params=config.face_params)  # fmt: skip
  params = init_params(spec, config.seed)
  if config.role not in ROLES:
    raise ConfigError(f"config.role must be one of {sorted(ROLES)}, not {config.role!r}")
  if config.recognizer_stage.batch_size % 2:
    raise ConfigError("recognizer_stage.batch_size must be even (pairs of one identity)")
  settings = config.recognizer_stage
  stage = Stage(
    "recognizer",
    settings,
    params,
    {},
    recognizer_loss(spec, config),
    lambda index, count: WorldBatches(
      None,
      RESOLUTION,
      settings.batch_size,
      config.data_seed,
      0.0,
      index,
      count,
      num_identities=config.num_identities,
      pairs=True,
      first_identity=config.first_identity,
    ),  # fmt: skip
  )
  mesh = mesh_lib.make_mesh(config.mesh)
  trained, record = run_stage(stage, config, workdir, mesh)
  trained = jax.device_get(trained)
  recognizer = Recognizer(spec, dict(trained), role=config.role)
  logging.info("evaluating on %d held-out identities", config.eval.num_identities)
  evaluation = verification.evaluate(recognizer, config.eval.num_identities,
                                     config.eval.prompt_images, config.data_seed)  # fmt: skip
  info = {
    "command": command_for(
      config,
      COMMAND.format(role=config.role),
      WORLD_VARIANTS,
      functools.partial(recognizer_config, role=config.role),
    ),
    "config": config.to_dict(),
    "training": record,
    "evaluation": evaluation,
  }
  recognizer = dataclasses.replace(recognizer, info=info)
  directory = os.path.join(workdir, "release")
  if jax.process_index() == 0:
    save_recognizer(recognizer, directory)
  return RecognizerResult(directory, recognizer, evaluation)
