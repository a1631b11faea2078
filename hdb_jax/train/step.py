"""Phase 1's functional core: the loss and one jitted, sharded training step.

loss = mean over the batch of  alpha * diffusion(θ̂ applied in batched mode) + beta * ||θ̂ - θ*||²
where θ̂ is the hypernetwork's packed LiDB prediction for each image, θ* its Phase 0 target, and
||.||² the squared L2 norm over all D LiDB numbers (the paper's term; D = 28,800 on SD1.5's default
layers). A step whose loss or gradients are not finite leaves the parameters and optimizer untouched
(`finite` = 0 in its metrics); the loop stops after too many in a row.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from hdb_jax import adapters, models
from hdb_jax.diffusion.base import BaseModel
from hdb_jax.diffusion.loss import per_example_loss
from hdb_jax.engine.optimizers import make_optimizer
from hdb_jax.hypernet.network import Hypernet
from hdb_jax.runtime import mesh as mesh_lib

Batch = dict[str, jax.Array]  # 'image' [B, H, W, 3] in [-1, 1], 'weights' [B, D]


@dataclasses.dataclass
class HyperTrainState:
  params: Any
  opt_state: Any
  step: jax.Array  # [] int32


jax.tree_util.register_dataclass(
  HyperTrainState, data_fields=["params", "opt_state", "step"], meta_fields=[]
)


@dataclasses.dataclass(frozen=True)
class LossWeights:
  alpha: float  # diffusion loss
  beta: float  # weight-space loss: beta * ||θ̂ - θ*||² (a sum over the D LiDB numbers, not a mean)


@dataclasses.dataclass(frozen=True)
class HyperTrainer:
  """Builds the loss and the jitted step for one hypernetwork on one base model."""

  net: Hypernet
  base: BaseModel
  optimizer: optax.GradientTransformation
  weights: LossWeights
  seed: int

  def frozen(self) -> dict[str, Any]:
    """What the step reads but never trains: base model, aux bases, the frozen encoder."""
    return {
      "sd": self.base.sd.params,
      "aux": self.base.aux,
      "encoder": None if self.net.train_encoder else self.net.encoder.params,
    }

  def init_state(self, params: Any) -> HyperTrainState:
    return HyperTrainState(
      params=params, opt_state=self.optimizer.init(params), step=jnp.zeros((), jnp.int32)
    )

  def initial_state(self, theta_init: jax.Array) -> HyperTrainState:
    """Step 0: the hypernetwork initialised from the seed, predicting theta_init [D] (packed)."""
    return self.init_state(self.net.init_params(jax.random.key(self.seed), theta_init))

  def shardings(
    self, mesh: Mesh, abstract_state: Any, shard_frozen: bool, shard_trainable: bool = False
  ) -> tuple[Any, Any]:
    """Where the step's arrays live: (state, frozen), each replicated or, with shard_trainable /
    shard_frozen, its large leaves split on 'fsdp' (a trainable ViT-H's weights and Adam moments:
    ZeRO-3 over 'fsdp'). abstract_state: jax.eval_shape of the state."""
    return (
      mesh_lib.fsdp_shardings(abstract_state, mesh, shard_trainable),
      mesh_lib.fsdp_shardings(self.frozen(), mesh, shard_frozen),
    )

  def abstract_batch(self, batch_size: int, mesh: Mesh) -> Batch:
    """The step's batch as jax.ShapeDtypeStructs split over the mesh: image [B, R, R, 3], weights
    [B, D]."""
    sharding, size = mesh_lib.batch_sharding(mesh), self.base.sd.resolution
    lidb_size = adapters.lidb_size(self.base.layers, self.base.lidb_config)
    return {
      "image": jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32, sharding=sharding),
      "weights": jax.ShapeDtypeStruct((batch_size, lidb_size), jnp.float32, sharding=sharding),
    }

  def per_example_losses(
    self,
    params: Any,
    frozen: dict[str, Any],
    batch: Batch,
    keys: jax.Array,
    refine_steps: int | None = None,
    diffusion: bool | None = None,
  ) -> dict[str, jax.Array]:
    """{'weight': [B] (||θ̂ - θ*||²), 'diffusion': [B], 'total': [B]}; the diffusion term is
    computed when `diffusion` (default: alpha > 0), else zero."""
    # base.remat (config.remat): the UNet's blocks, and a trainable encoder's layers
    encoder_layers = models.ENCODER_LAYERS if self.net.train_encoder else ()
    with models.rematerialized(self.base.remat, encoder_layers):
      predicted = self.net.predict(params, frozen["encoder"], batch["image"], refine_steps)
    weight = jnp.sum(jnp.square(predicted - batch["weights"]), axis=-1)
    diffusion_loss = jnp.zeros_like(weight)
    if self.weights.alpha if diffusion is None else diffusion:
      with models.rematerialized(self.base.remat, models.UNET_BLOCKS):
        diffusion_loss = self._diffusion(frozen, predicted, batch["image"], keys)
    return {
      "weight": weight,
      "diffusion": diffusion_loss,
      "total": self.weights.alpha * diffusion_loss + self.weights.beta * weight,
    }

  def _diffusion(self, frozen, predicted, images, keys):
    sd = self.base.sd
    latents = jax.lax.stop_gradient(models.vae_encode(sd, frozen["sd"]["vae"], images))
    input_ids = self.base.prompt_batch(images.shape[0])

    def loss(sd_params, packed):
      factors = adapters.lidb_factors(self.net.unpack(packed), frozen["aux"])
      return per_example_loss(sd, sd_params, factors, latents, input_ids, keys)

    return loss(frozen["sd"], predicted)

  def step_keys(self, step: jax.Array, batch_size: int) -> jax.Array:
    """Per-example noise keys of a step: the same for the same (seed, step) whatever the
    sharding."""
    return jax.random.split(jax.random.fold_in(jax.random.key(self.seed), step), batch_size)

  def train_step(
    self, state: HyperTrainState, frozen: dict[str, Any], batch: Batch
  ) -> tuple[HyperTrainState, dict]:
    keys = self.step_keys(state.step, batch["image"].shape[0])

    def loss_fn(params):
      losses = self.per_example_losses(params, frozen, batch, keys)
      return jnp.mean(losses["total"]), losses

    (loss, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # noqa: E731
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = HyperTrainState(
      params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      step=state.step + 1,
    )
    metrics = {
      "loss": loss,
      "weight_loss": jnp.mean(losses["weight"]),
      "weight_mse": jnp.mean(losses["weight"]) / batch["weights"].shape[-1],
      "diffusion_loss": jnp.mean(losses["diffusion"]),
      "grad_norm": grad_norm,
      "finite": finite.astype(jnp.int32),
    }
    return new_state, metrics

  def jit_train_step(
    self, mesh: Mesh, state_sharding: Any, frozen_sharding: Any
  ) -> Callable[[HyperTrainState, dict, Batch], tuple[HyperTrainState, dict]]:
    """The step under `mesh`: batch split over the mesh, state donated, metrics replicated."""
    batch = mesh_lib.batch_sharding(mesh)
    return jax.jit(
      mesh_lib.traced_on(mesh, self.train_step),
      in_shardings=(state_sharding, frozen_sharding, batch),
      out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
      donate_argnums=(0,),
    )

  def jit_eval(self, mesh: Mesh, params_sharding: Any, frozen_sharding: Any) -> Callable[..., dict]:
    """eval(params, frozen, batch, keys) -> per-example losses (diffusion included), for held-out
    identities."""

    def evaluate(params, frozen, batch, keys):
      return self.per_example_losses(params, frozen, batch, keys, diffusion=True)

    replicated = mesh_lib.replicated(mesh)
    return jax.jit(
      mesh_lib.traced_on(mesh, evaluate),
      in_shardings=(params_sharding, frozen_sharding, replicated, replicated),
      out_shardings=replicated,
    )


def make_trainer(config: ml_collections.ConfigDict, base: BaseModel, net: Hypernet) -> HyperTrainer:
  """Phase 1's trainer for configs/hyper.py's fields (optim, steps, alpha, beta, seed; remat is
  the base model's)."""
  return HyperTrainer(
    net=net,
    base=base,
    optimizer=make_optimizer(config.optim, config.steps),
    weights=LossWeights(config.alpha, config.beta),
    seed=config.seed,
  )
