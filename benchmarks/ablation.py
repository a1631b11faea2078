"""The paper's Table 3 at toy scale: does the hypernetwork's prediction help the fast finetune?

  python benchmarks/ablation.py --workdir=/tmp/ablation
  python benchmarks/ablation.py --workdir=/tmp/ablation --identities=24 --hyper_steps=600 \\
      --finetune_steps=5,10,40

On the tiny model and procedural faces: Phase 0 on every identity, the hypernetwork trained on all
but `--heldout` of them (s=3 refinement, and a k=1 network), then each held-out face personalized by
every method. The score is the diffusion loss on the held-out photos (mean over fixed noise draws
and timesteps, the same for every method; lower is better), and for predictions the weight-space MSE
to the face's Phase 0 weights. Rows:
  base model            no adapter
  Phase 0 target        LiDB optimized for that face (what the hypernetwork is taught to predict)
  No Hyper  (K)         rank-r' LoRA from zero, K steps (the fast finetune without a prediction)
  Only Hyper            the prediction alone
  Hyper + finetune (K)  the full method: prediction, then K steps of rank-relaxed finetune
  k=1 ...               the same with a network trained without iterative refinement
Everything is cached in WORKDIR (Phase 0 and both networks resume), so a rerun only re-evaluates.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from hdb_jax import adapters, data
from hdb_jax.config import phases
from hdb_jax.diffusion.base import encode_latents, setup_base_model
from hdb_jax.diffusion.loss import per_example_loss
from hdb_jax.formats.hypernet_loading import load_predictor
from hdb_jax.personalize.step import personalize_images
from hdb_jax.preoptimize.loop import preoptimize
from hdb_jax.runtime.cli import quiet_orbax
from hdb_jax.train.loop import train

flags.DEFINE_string("workdir", "/tmp/hdb_ablation", "Cache and outputs.")
flags.DEFINE_integer("identities", 16, "Procedural identities (Phase 0 on all).")
flags.DEFINE_integer("heldout", 4, "Identities kept out of hypernetwork training and evaluated.")
flags.DEFINE_integer("phase0_steps", 60, "Phase 0 steps per identity.")
flags.DEFINE_integer("hyper_steps", 300, "Hypernetwork training steps.")
flags.DEFINE_list("finetune_steps", ["10", "40"], "K: fast-finetune step counts to compare.")
flags.DEFINE_integer("noise_draws", 16, "Noise/timestep draws per photo in the held-out loss.")
FLAGS = flags.FLAGS


def run_phase0(workdir: str):
  config = phases.preoptimize_config("tiny")
  config.num_identities = config.data.num_identities = FLAGS.identities
  config.steps = FLAGS.phase0_steps
  return preoptimize(config, os.path.join(workdir, "phase0"))


def train_hypernet(workdir: str, refine_steps: int) -> str:
  config = phases.hyper_config("tiny")
  config.weights = os.path.join(workdir, "phase0", "weights")
  config.data.num_identities = FLAGS.identities
  config.eval.num_identities, config.eval.every, config.eval.samples = (
    FLAGS.heldout,
    FLAGS.hyper_steps,
    False,
  )
  config.steps, config.model.refine_steps = FLAGS.hyper_steps, refine_steps
  config.checkpoint_every = FLAGS.hyper_steps
  out = os.path.join(workdir, f"hyper_k{refine_steps}")
  train(config, out)
  return out


def main(argv):
  del argv
  quiet_orbax()
  workdir = FLAGS.workdir
  start = time.perf_counter()
  dataset = run_phase0(workdir)
  hypernets = {k: train_hypernet(workdir, k) for k in (3, 1)}
  setup_s = time.perf_counter() - start

  config = phases.personalize_config("tiny")
  config.num_samples, config.export = 0, ""
  base = setup_base_model(config)
  targets = dataset.as_mapping()
  _, heldout = data.split_identities(sorted(targets), FLAGS.heldout)
  hyper_config = phases.hyper_config("tiny")
  hyper_config.data.num_identities = FLAGS.identities
  images = data.identity_images(hyper_config.data, heldout, base.sd.resolution, hyper_config.seed)
  latents = encode_latents(base, images)
  input_ids = base.prompt_batch(len(heldout))
  draws = [
    jax.random.split(jax.random.key(10_000 + d), len(heldout)) for d in range(FLAGS.noise_draws)
  ]
  loss_fn = jax.jit(
    lambda f, k: per_example_loss(base.sd, base.sd.params, f, latents, input_ids, k)
  )
  packer = adapters.lidb_packer(base.layers, base.lidb_config)
  wanted = np.stack([targets[i] for i in heldout])

  def score(factors) -> float:
    return float(np.mean([np.asarray(loss_fn(factors, k)) for k in draws]))

  def lidb(packed):
    return adapters.lidb_factors(packer.unpack(jnp.asarray(packed)), base.aux)

  def finetuned(steps, predictor):
    run_config = config.copy_and_resolve_references()
    run_config.steps = steps
    if predictor is None:
      run_config.baseline = "lora"
    result = personalize_images(base, run_config, images, predictor)
    stacked = [ident.factors() for ident in result.identities]
    return {p: tuple(jnp.stack([f[p][j] for f in stacked]) for j in range(2)) for p in stacked[0]}

  rows = [
    ("base model", "", score(None), float("nan")),
    ("Phase 0 target (LiDB)", FLAGS.phase0_steps, score(lidb(wanted)), 0.0),
  ]
  predictors = {k: load_predictor(path, base) for k, path in hypernets.items()}
  for k, predictor in predictors.items():
    name = "Only Hyper" if k == 3 else "k=1 Only Hyper"
    predicted = np.asarray(packer.pack(predictor(jnp.asarray(images))))
    rows.append((name, 0, score(lidb(predicted)), float(np.mean(np.square(predicted - wanted)))))
  for steps in [int(s) for s in FLAGS.finetune_steps]:
    rows.append(("No Hyper (LoRA from zero)", steps, score(finetuned(steps, None)), float("nan")))
    rows.append(
      ("Hyper + fast finetune", steps, score(finetuned(steps, predictors[3])), float("nan"))
    )
    rows.append(
      ("k=1 Hyper + fast finetune", steps, score(finetuned(steps, predictors[1])), float("nan"))
    )

  print(
    f"\nToy-scale ablation: tiny SD, {FLAGS.identities} procedural identities ({FLAGS.heldout} "
    "held out), "
    f"hypernetwork {FLAGS.hyper_steps} steps; Phase 0 + training {setup_s:.0f} s"
  )
  print("| method | finetune steps K | held-out diffusion loss | weight MSE to Phase 0 |")
  print("|---|---|---|---|")
  for name, steps, loss, mse in rows:
    print(f"| {name} | {steps} | {loss:.4f} | {'' if np.isnan(mse) else f'{mse:.2e}'} |")


if __name__ == "__main__":
  app.run(main)
