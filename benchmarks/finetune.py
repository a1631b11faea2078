"""The rank-relaxed finetune step, ours (JAX) next to PyTorch (diffusers + peft), on this machine.

Not a test: prints a table. The step: frozen UNet with random weights, frozen per-example LiDB
factors (ours only; PyTorch has plain LoRA), trainable LoRA rank 4 on the default UNet layers
(attn1/attn2 to_q, to_k, to_v, to_out and the GEGLU input projection ff.net.0.proj), AdamW, float32,
batch 1, epsilon-MSE at a random timestep on SD1.5's noise schedule, 77 random text-embedding tokens
(UNet only: no text encoder on either side). Each side runs in its own subprocess so that its peak
RSS is its own.

  python benchmarks/finetune.py                        # both models, both sides, one table
  python benchmarks/finetune.py --model=tiny           # TINY_UNET, 8x8 latents
  python benchmarks/finetune.py --model=sd15-32        # SD1.5 UNet widths, 32x32 latents (slow)
  python benchmarks/finetune.py --side=jax --model=tiny   # one side (what the parent runs)
  python benchmarks/finetune.py --phase0               # Phase 0 identity-steps/s, N = 1, 4, 16
  # where our step's time goes:
  python benchmarks/finetune.py --profile=/tmp/prof --model=sd15-32 --steps=2

Ours: the jitted multi-step `run` of AdapterTrainer (one lax.scan over --steps steps); step time =
median over --repeats calls / --steps; compile = lower + compile of `run`. PyTorch: median time of
single steps after --warmup steps; its "compile" column is the first (warm-up) step. PyTorch runs
with OMP_WAIT_POLICY=PASSIVE unless the environment sets it (see below).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

import numpy as np

# OpenMP threads that spin while waiting make PyTorch many times slower on shared cores (4.5 s vs
# 0.13 s per tiny step, measured); passive waiting costs nothing when the cores are free. Must be
# set before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MODELS = ("tiny", "sd15-32")
# the same layers, as peft names them
PEFT_TARGETS = [
  "to_q",
  "to_k",
  "to_v",
  "to_out.0",
  "ff.net.0.proj",
]
LORA_RANK = 4
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-2
TOKENS = 77


def unet_targets() -> list[str]:
  """The default adapter targets' UNet patterns (the benchmark has no text encoder)."""
  from hdb_jax.adapters import DEFAULT_TARGETS

  return [t for t in DEFAULT_TARGETS if t.startswith("^unet/")]


def unet_config(model: str) -> dict[str, Any]:
  from hdb_jax.models import configs

  if model == "tiny":
    return dict(configs.TINY_UNET)
  if model == "sd15-32":
    return {**configs.SD15_UNET, "sample_size": 32}
  raise ValueError(f"unknown model {model!r} ({', '.join(MODELS)})")


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build_jax(model: str, steps: int) -> tuple[Any, tuple, Any, Any]:
  """The finetune step as personalize runs it: (trainer, run args, LoRA init, jitted run, not
  compiled)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from diffusers import FlaxUNet2DConditionModel  # pylint: disable=import-outside-toplevel

  from hdb_jax import adapters, models
  from hdb_jax.config.pieces import optimizer_config
  from hdb_jax.engine.optimizers import make_optimizer
  from hdb_jax.engine.trainer import AdapterTrainer, example_keys, stack_examples
  from hdb_jax.models.schedulers import training_scheduler
  from hdb_jax.models.tiny import random_params

  config = unet_config(model)
  unet = FlaxUNet2DConditionModel.from_config(config)
  # On the device once, as loaded models are: numpy leaves would be copied in on every call.
  unet_params = jax.device_put(
    random_params(jax.eval_shape(unet.init_weights, jax.random.key(0)), seed=0)
  )
  scheduler, scheduler_state = training_scheduler(models.configs.SD15_SCHEDULER)

  def fixed_text_apply(variables, ids, *_, **__):
    """Stands in for the text encoder: the fixed random embeddings held in its "params"."""
    embeddings = variables["params"]["embeddings"]
    return (jnp.broadcast_to(embeddings, (ids.shape[0],) + embeddings.shape[1:]),)

  fixed_text = types.SimpleNamespace(module=types.SimpleNamespace(apply=fixed_text_apply))
  rng = np.random.default_rng(0)
  text = jnp.asarray(rng.standard_normal((1, TOKENS, config["cross_attention_dim"])), jnp.float32)
  sd = models.StableDiffusion(
    unet=unet,
    vae=None,
    text_encoder=fixed_text,
    tokenizer=None,
    scheduler=scheduler,
    scheduler_state=scheduler_state,
    params={"unet": unet_params, "text_encoder": {"embeddings": text}},
    source="random",
  )

  layers = adapters.select_layers({"unet": unet_params}, unet_targets())
  lidb_config = adapters.LidbConfig()
  frozen = adapters.lidb_factors(
    stack_examples([adapters.init_lidb(layers, lidb_config, jax.random.key(1))]),
    adapters.aux_bases(layers, lidb_config),
  )
  optim = optimizer_config(LEARNING_RATE)
  optim.update(optimizer="adamw", weight_decay=WEIGHT_DECAY, grad_clip=0.0)  # as torch.optim.AdamW
  trainer = AdapterTrainer(
    sd=sd,
    to_factors=adapters.lora_factors,
    optimizer=make_optimizer(optim, steps),
    packer=adapters.lora_packer(layers, LORA_RANK),
  )
  lora = stack_examples([adapters.init_lora(layers, LORA_RANK, jax.random.key(2))])
  size = config["sample_size"]
  latents = jnp.asarray(rng.standard_normal((1, size, size, 4)), jnp.float32)
  args = (
    sd.params,
    frozen,
    latents,
    jnp.zeros((1, TOKENS), jnp.int32),
    example_keys(0, jnp.arange(1)),
  )
  return trainer, args, lora, trainer.make_run(steps)


def bench_jax(model: str, steps: int, repeats: int) -> dict[str, float]:
  import jax  # pylint: disable=import-outside-toplevel

  trainer, args, lora, run = build_jax(model, steps)
  start = time.perf_counter()
  run = run.lower(*args, trainer.init(lora)).compile()
  compile_s = time.perf_counter() - start
  state, losses = run(*args, trainer.init(lora))  # warm-up
  jax.block_until_ready(losses)
  times = []
  for _ in range(repeats):
    state = trainer.init(lora)
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, losses = run(*args, state)
    jax.block_until_ready(losses)
    times.append(time.perf_counter() - start)
  if not np.all(np.isfinite(np.asarray(losses))):
    raise RuntimeError("non-finite loss")
  return {
    "compile_s": compile_s,
    "step_s": statistics.median(times) / steps,
    "trainable": trainer.packer.size,
  }


def profile_jax(model: str, steps: int, out_dir: str, top: int) -> None:
  """Profiles one jitted run; prints the time per step of each kind of XLA op and the slowest ops.

  XLA:CPU reports one trace event per executed op (thunk) when compiled with
  --xla_cpu_enable_xprof_traceme, which main() sets before jax is imported.
  """
  import jax  # pylint: disable=import-outside-toplevel

  trainer, args, lora, run = build_jax(model, steps)
  run = run.lower(*args, trainer.init(lora)).compile()
  state, losses = run(*args, trainer.init(lora))  # warm-up
  jax.block_until_ready(losses)
  state = trainer.init(lora)
  jax.block_until_ready(state)
  with jax.profiler.trace(out_dir, create_perfetto_trace=True):
    start = time.perf_counter()
    state, losses = run(*args, state)
    jax.block_until_ready(losses)
    seconds = time.perf_counter() - start
  traces = sorted(
    glob.glob(os.path.join(out_dir, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime
  )
  with gzip.open(traces[-1]) as f:
    events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X" and "dur" in e]
  hlo = run.as_text()
  op_names = set(re.findall(r"^\s*(?:ROOT )?%([\w.-]+) = ", hlo, re.M))
  by_op, by_kind = collections.Counter(), collections.Counter()
  for event in events:
    if event["name"] in op_names and not event["name"].startswith("while"):
      by_op[event["name"]] += event["dur"] / 1e3 / steps
      by_kind[re.sub(r"\.\d+$", "", event["name"])] += event["dur"] / 1e3 / steps
  print(
    f"{model}: {seconds / steps:.3f} s/step in the profiled run; ops sum to "
    f"{sum(by_op.values()):.0f} ms/step "
    f"(ops on different threads overlap). Trace: {traces[-1]}"
  )
  print(f"\n{'ms/step':>9s}  kind of op")
  for kind, ms in by_kind.most_common(top):
    print(f"{ms:9.1f}  {kind}")
  where = {m.group(1): m.group(2) for m in re.finditer(r'%([\w.-]+) = .*?op_name="([^"]*)"', hlo)}
  print(f"\n{'ms/step':>9s}  op  (source)")
  for name, ms in by_op.most_common(top):
    print(f"{ms:9.1f}  {name}  ({where.get(name, '')[-100:]})")


def bench_torch(model: str, steps: int, warmup: int) -> dict[str, float]:
  import torch  # pylint: disable=import-outside-toplevel

  # pylint: disable=import-outside-toplevel
  from diffusers import DDPMScheduler, UNet2DConditionModel
  from peft import LoraConfig  # pylint: disable=import-outside-toplevel

  from hdb_jax.models import configs

  torch.manual_seed(0)
  config = unet_config(model)
  unet = UNet2DConditionModel(**config)
  unet.requires_grad_(False)
  unet.add_adapter(
    LoraConfig(
      r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights="gaussian", target_modules=PEFT_TARGETS
    )
  )
  trainable = [p for p in unet.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
  scheduler = DDPMScheduler(
    **{k: v for k, v in configs.SD15_SCHEDULER.items() if k != "set_alpha_to_one"}
  )
  size = config["sample_size"]
  latents = torch.randn(1, 4, size, size)
  text = torch.randn(1, TOKENS, config["cross_attention_dim"])
  unet.train()

  def step() -> float:
    noise = torch.randn_like(latents)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (1,))
    pred = unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=text).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()

  start = time.perf_counter()
  step()
  first_s = time.perf_counter() - start
  for _ in range(warmup - 1):
    step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return {
    "compile_s": first_s,
    "step_s": statistics.median(times),
    "trainable": sum(p.numel() for p in trainable),
  }


def run_side(side: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
  """Runs one side in a subprocess; returns its result line (or the error)."""
  command = [
    sys.executable,
    __file__,
    f"--side={side}",
    f"--model={model}",
    f"--steps={args.steps}",
    f"--repeats={args.repeats}",
    f"--warmup={args.warmup}",
  ]
  proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=args.timeout)
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT ") :])
  return {
    "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"rc {proc.returncode}"]
  }


def phase0(steps: int) -> None:
  """Phase 0 (LiDB per identity, text encoder + UNet, the tiny model) as hdb_jax.preoptimize runs
  it."""
  import jax  # pylint: disable=import-outside-toplevel

  from hdb_jax.config.phases import preoptimize_config
  from hdb_jax.diffusion.base import setup_base_model
  from hdb_jax.engine.trainer import lidb_trainer
  from hdb_jax.preoptimize.step import train_lidb_batch

  config = preoptimize_config("tiny")
  config.pretrained = "tiny:" + tempfile.mkdtemp(prefix="hdb_tiny_")
  config.compilation_cache = False
  config.steps = steps
  base = setup_base_model(config)
  rng = np.random.default_rng(0)
  print(
    f"\nPhase 0 on the tiny model ({len(base.layers)} LiDB layers), {steps} steps per run, "
    f"{jax.devices()[0].platform}"
  )
  print(f"{'identities/step':>15s} {'compile s':>10s} {'step s':>8s} {'identity-steps/s':>17s}")
  for n in (1, 4, 16):
    trainer = lidb_trainer(base, config.optim, steps)
    run = trainer.make_run(steps)
    images = rng.uniform(-1, 1, (n, base.sd.resolution, base.sd.resolution, 3)).astype(np.float32)
    start = time.perf_counter()
    train_lidb_batch(base, config, images, list(range(n)), trainer, run)  # compile + one run
    first = time.perf_counter() - start
    start = time.perf_counter()
    train_lidb_batch(base, config, images, list(range(n)), trainer, run)
    seconds = time.perf_counter() - start
    print(f"{n:15d} {first - seconds:10.1f} {seconds / steps:8.4f} {n * steps / seconds:17.1f}")


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--model", choices=MODELS + ("all",), default="all")
  parser.add_argument("--side", choices=("jax", "torch", "both"), default="both")
  parser.add_argument(
    "--steps", type=int, default=10, help="steps per jitted run (ours) / timed steps (PyTorch)"
  )
  parser.add_argument("--repeats", type=int, default=3, help="timed calls of the jitted run (ours)")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (PyTorch)")
  parser.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess")
  parser.add_argument("--phase0", action="store_true", help="Phase 0 throughput instead")
  parser.add_argument(
    "--profile",
    metavar="DIR",
    help="profile our step (one --model, --steps steps) into DIR "
    "and print the time per kind of XLA op instead",
  )
  parser.add_argument("--top", type=int, default=25, help="rows of the --profile tables")
  args = parser.parse_args()

  if args.profile:
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
    ).strip()
    profile_jax(
      MODELS[0] if args.model == "all" else args.model, args.steps, args.profile, args.top
    )
    return
  if args.phase0:
    phase0(args.steps)
    return
  if args.side != "both":
    model = MODELS[0] if args.model == "all" else args.model
    if args.side == "jax":
      bench = bench_jax(model, args.steps, args.repeats)
    else:
      bench = bench_torch(model, args.steps, args.warmup)
    print("RESULT " + json.dumps({**bench, "rss_gib": peak_rss_gib()}))
    return

  print(
    f"{'model':8s} {'side':8s} {'compile s':>10s} {'step s':>9s} {'peak RSS GiB':>13s} "
    f"{'ours/PyTorch':>13s}"
  )
  for model in MODELS if args.model == "all" else (args.model,):
    ours, theirs = run_side("jax", model, args), run_side("torch", model, args)
    for name, result in (("ours", ours), ("pytorch", theirs)):
      if "error" in result:
        print(f"{model:8s} {name:8s} failed: {result['error']}")
        continue
      print(
        f"{model:8s} {name:8s} {result['compile_s']:10.2f} {result['step_s']:9.4f} "
        f"{result['rss_gib']:13.2f}"
      )
    if "error" not in ours and "error" not in theirs:
      print(
        f"{model:8s} {'ratio':8s} {'':10s} {'':9s} {'':13s} "
        f"{ours['step_s'] / theirs['step_s']:8.2f} step, {ours['rss_gib'] / theirs['rss_gib']:.2f} "
        "RSS"
      )
  print(
    "\nours: jitted run of --steps steps (lax.scan), median call / steps, compile = lower+compile; "
    "PyTorch: median single step, 'compile' = first step. Trainables: LoRA rank 4 "
    f"(ours also carries frozen LiDB factors). Steps {args.steps}."
  )


if __name__ == "__main__":
  main()
