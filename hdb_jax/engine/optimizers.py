"""Optimizers from config: Adam/AdamW with clipping and a learning-rate schedule."""

import ml_collections
import optax

from hdb_jax.errors import ConfigError


def make_optimizer(
  config: ml_collections.ConfigDict, num_steps: int
) -> optax.GradientTransformation:
  """config: hdb_jax.config.pieces.optimizer_config's fields: optimizer ('adam'|'adamw'),
  learning_rate, weight_decay, grad_clip (0 = off), schedule ('constant'|'cosine'|'linear'),
  warmup_steps."""
  lr = config.learning_rate
  warmup = min(int(config.warmup_steps), max(num_steps - 1, 0))
  schedule_name = config.schedule
  if schedule_name == "constant":
    schedule = optax.constant_schedule(lr)
  elif schedule_name == "cosine":
    schedule = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
  elif schedule_name == "linear":
    schedule = optax.linear_schedule(lr, 0.0, max(num_steps - warmup, 1))
  else:
    raise ConfigError(f"unknown schedule {schedule_name!r} (constant, cosine, linear)")
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])
  name = config.optimizer
  if name == "adam":
    opt = optax.adam(schedule)
  elif name == "adamw":
    opt = optax.adamw(schedule, weight_decay=config.weight_decay)
  else:
    raise ConfigError(f"unknown optimizer {name!r} (adam, adamw)")
  clip = config.grad_clip
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
