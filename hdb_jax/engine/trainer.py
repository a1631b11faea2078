"""Trains per-example adapters, many examples at once, each with its own weights and optimizer.

The same engine serves Phase 0 (one LiDB per training face), the from-scratch baseline, and the
rank-relaxed fast finetune (a LoRA, or extra LiDB ranks, on top of frozen predicted LiDB factors).
Examples never interact: the batch loss is the sum of per-example losses, gradients are per example,
and the optimizer update is vmapped over the example axis, so N examples in one batch equal N runs
alone.
All steps run inside one `lax.scan` (no host round trips). A non-finite loss freezes that example
at its last good weights and is reported.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from hdb_jax import adapters, models
from hdb_jax.adapters import Factors
from hdb_jax.adapters.packing import Packer
from hdb_jax.diffusion.base import BaseModel
from hdb_jax.diffusion.loss import per_example_loss
from hdb_jax.diffusion.prior import ClassPrior
from hdb_jax.engine.optimizers import make_optimizer
from hdb_jax.errors import UserError

ToFactors = Callable[[Any], Factors]


class TrainingDivergedError(UserError, RuntimeError):
  """A loss became NaN/inf; the message names the examples and the step."""


@dataclasses.dataclass
class AdapterTrainState:
  """Per-example trainables and optimizer state (leading axis = example), plus bookkeeping."""

  trainable: Any
  opt_state: Any
  step: jax.Array  # [] int32, steps done
  diverged_at: jax.Array  # [B] int32, -1 while finite, else the step whose loss was not finite


jax.tree_util.register_dataclass(
  AdapterTrainState, data_fields=["trainable", "opt_state", "step", "diverged_at"], meta_fields=[]
)


@dataclasses.dataclass(frozen=True)
class AdapterTrainer:
  """Builds the jitted multi-step training function for one model and adapter kind.

  to_factors: trainable pytree (batch axis) -> factors (batch axis); frozen factors, when given to
  `run`, are concatenated in front (rank-relaxed: [A_lidb | A_lora] [B_lidb ; B_lora]).
  The state holds the trainables packed into one vector per example (see adapters.packing);
  `init` packs and `trainable_tree` unpacks.
  """

  sd: models.StableDiffusion
  to_factors: ToFactors
  optimizer: optax.GradientTransformation

  packer: Packer
  remat: str = "none"  # the UNet's per-block remat in the loss (models.REMAT_POLICIES)

  def init(self, trainable: Any) -> AdapterTrainState:
    """trainable: pytree with a leading example axis, shaped like the packer's template."""
    vectors = self.packer.pack(trainable)
    return AdapterTrainState(
      trainable=vectors,
      opt_state=jax.vmap(self.optimizer.init)(vectors),
      step=jnp.zeros((), jnp.int32),
      diverged_at=jnp.full((vectors.shape[0],), -1, jnp.int32),
    )

  def trainable_tree(self, state: AdapterTrainState) -> Any:
    return self.packer.unpack(state.trainable)

  def _factors(self, trainable: jax.Array, frozen: Factors | None) -> Factors:
    factors = self.to_factors(self.packer.unpack(trainable))
    if frozen:
      factors = adapters.concat_factors(jax.tree.map(jax.lax.stop_gradient, frozen), factors)
    return factors

  def losses(
    self,
    params: dict[str, Any],
    trainable: Any,
    frozen: Factors | None,
    latents: jax.Array,
    input_ids: jax.Array,
    keys: jax.Array,
    prior: ClassPrior | None = None,
  ) -> jax.Array:
    """Per-example losses [B] at the given weights (no update); with a prior, + weight * class
    loss."""
    factors = self._factors(trainable, frozen)
    with models.rematerialized(self.remat, models.UNET_BLOCKS):
      if prior is None:
        return per_example_loss(self.sd, params, factors, latents, input_ids, keys)
      batch = latents.shape[0]
      class_latents, class_ids = prior.pick(keys)
      class_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 2)
      losses = per_example_loss(
        self.sd,
        params,
        adapters.tile_factors(factors, 2),
        jnp.concatenate([latents, class_latents]),
        jnp.concatenate([input_ids, class_ids]),
        jnp.concatenate([keys, class_keys]),
      )
    return losses[:batch] + prior.weight * losses[batch:]

  def _step(
    self, params, frozen, latents, input_ids, example_keys, prior, state: AdapterTrainState, _
  ):
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(example_keys, state.step)

    def total_loss(trainable):
      losses = self.losses(params, trainable, frozen, latents, input_ids, keys, prior)
      return jnp.sum(losses), losses

    grads, losses = jax.grad(total_loss, has_aux=True)(state.trainable)
    updates, opt_state = jax.vmap(self.optimizer.update)(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    grads_finite = [
      jnp.all(jnp.isfinite(g.reshape(g.shape[0], -1)), axis=1) for g in jax.tree.leaves(grads)
    ]
    finite = (
      jnp.isfinite(losses) & (state.diverged_at < 0) & jnp.all(jnp.stack(grads_finite), axis=0)
    )

    def keep_good(new, old):
      mask = finite.reshape((-1,) + (1,) * (new.ndim - 1))
      return jnp.where(mask, new, old)

    diverged_at = jnp.where((state.diverged_at < 0) & ~finite, state.step, state.diverged_at)
    new_state = AdapterTrainState(
      trainable=jax.tree.map(keep_good, trainable, state.trainable),
      opt_state=jax.tree.map(keep_good, opt_state, state.opt_state),
      step=state.step + 1,
      diverged_at=diverged_at,
    )
    return new_state, losses

  def make_run(
    self, num_steps: int, on_step: Callable[[jax.Array], None] | None = None
  ) -> Callable[..., tuple[AdapterTrainState, jax.Array]]:
    """run(params, frozen, latents, input_ids, example_keys, state, prior=None) -> (state, losses
    [steps, B]).

    example_keys: [B] PRNG keys, one per example (fold in a global example index so that the same
    example gets the same noise whatever batch it is in). `state` is donated. prior: a ClassPrior
    (DreamBooth prior preservation) or None. on_step: called on the host with each finished step's
    number (1..num_steps) while the compiled run goes on (a progress bar), or None.
    """

    def step(params, frozen, latents, input_ids, example_keys, prior, state, x):
      state, losses = self._step(params, frozen, latents, input_ids, example_keys, prior, state, x)
      if on_step is not None:
        jax.debug.callback(on_step, state.step, ordered=True)
      return state, losses

    def run(params, frozen, latents, input_ids, example_keys, state, prior=None):
      body = functools.partial(step, params, frozen, latents, input_ids, example_keys, prior)
      return jax.lax.scan(body, state, None, length=num_steps)

    return jax.jit(run, donate_argnums=(5,))


def lidb_trainer(
  base: BaseModel,
  optim_config: ml_collections.ConfigDict,
  steps: int,
  lidb_config: adapters.LidbConfig | None = None,
) -> AdapterTrainer:
  """A trainer of LiDB params (A_train, B_train) on base's layers, through its frozen aux bases.

  lidb_config: the trained ranks (default base.lidb_config); its a and b must be base's, since the
  aux bases are.
  """
  lidb_config = lidb_config or base.lidb_config
  if (lidb_config.a, lidb_config.b, lidb_config.aux_seed) != (
    base.lidb_config.a,
    base.lidb_config.b,
    base.lidb_config.aux_seed,
  ):
    raise ValueError("a LiDB trainer must use the base model's aux bases (a, b, aux_seed)")
  return AdapterTrainer(
    sd=base.sd,
    to_factors=lambda t: adapters.lidb_factors(t, base.aux),
    optimizer=make_optimizer(optim_config, steps),
    packer=adapters.lidb_packer(base.layers, lidb_config),
    remat=base.remat,
  )


def lora_trainer(
  base: BaseModel, rank: int, optim_config: ml_collections.ConfigDict, steps: int
) -> AdapterTrainer:
  """A trainer of plain rank-`rank` LoRA factors on base's layers."""
  return AdapterTrainer(
    sd=base.sd,
    to_factors=adapters.lora_factors,
    optimizer=make_optimizer(optim_config, steps),
    packer=adapters.lora_packer(base.layers, rank),
    remat=base.remat,
  )


def run_inputs(
  base: BaseModel,
  frozen: Any,
  latents: jax.Array,
  seed: int,
  example_ids: jax.Array,
  state: AdapterTrainState,
  prior: ClassPrior | None,
) -> tuple:
  """The arguments of `make_run`'s program for B examples of base's prompt: (params, frozen,
  latents [B, h, w, 4], prompt ids [B, T], example keys [B], state, prior)."""
  batch = len(example_ids)
  keys = example_keys(seed, example_ids)
  return (base.sd.params, frozen, latents, base.prompt_batch(batch), keys, state, prior)


def example_keys(seed: int, example_ids: jax.Array) -> jax.Array:
  """One PRNG key per example, from a seed and each example's global index: [B] keys."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(seed), example_ids)


def check_finite(state: AdapterTrainState, names: list[str]) -> None:
  """Raises TrainingDivergedError naming the examples whose loss became non-finite."""
  diverged = [
    (name, int(at)) for name, at in zip(names, jax.device_get(state.diverged_at)) if at >= 0
  ]
  if diverged:
    listed = ", ".join(f"{name} at step {at}" for name, at in diverged[:5])
    raise TrainingDivergedError(
      f"loss became NaN/inf for {len(diverged)} example(s) ({listed}); their "
      "weights were kept at the last finite step. Lower the learning rate or "
      "check the input images."
    )


def stack_examples(trees: list[Any]) -> Any:
  """List of per-example pytrees -> one pytree with a leading example axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack_example(tree: Any, index: int) -> Any:
  return jax.tree.map(lambda x: x[index], tree)
