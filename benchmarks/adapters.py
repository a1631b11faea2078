"""Cost of applying adapters: batched mode (per-example LiDB via the interceptor) and merge, next to
the plain UNet forward with the same batch. Not a test: prints a table.

  python benchmarks/adapters.py                      # SD1.5 UNet topology and widths, 16x16 latents
  python benchmarks/adapters.py --width=0.5 --latent=32

Target: batched-mode overhead <= 10% of the plain forward.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from hdb_jax import adapters, models
from hdb_jax.models.tiny import random_params


def timed(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile + warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--width", type=float, default=1.0, help="fraction of SD1.5's channel widths")
  parser.add_argument("--latent", type=int, default=16, help="latent size (SD1.5 at 512 px: 64)")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  widths = [
    max(32, int(round(c * args.width / 32)) * 32)
    for c in models.configs.SD15_UNET["block_out_channels"]
  ]
  unet_config = {
    **models.configs.SD15_UNET,
    "block_out_channels": widths,
    "sample_size": args.latent,
  }
  from diffusers import FlaxUNet2DConditionModel  # pylint: disable=import-outside-toplevel

  unet = FlaxUNet2DConditionModel.from_config(unet_config)
  params = random_params(jax.eval_shape(unet.init_weights, jax.random.key(0)), seed=0)
  unet_params = {"unet": params}
  layers = adapters.select_layers(
    unet_params, [t for t in adapters.DEFAULT_TARGETS if t.startswith("^unet/")]
  )
  config = adapters.LidbConfig()
  aux = adapters.aux_bases(layers, config)
  lidb = jax.tree.map(
    lambda *x: jnp.stack(x),
    *[adapters.init_lidb(layers, config, jax.random.key(i)) for i in range(args.batch)],
  )
  rng = np.random.default_rng(0)
  sample = jnp.asarray(rng.standard_normal((args.batch, 4, args.latent, args.latent)), jnp.float32)
  text = jnp.asarray(
    rng.standard_normal((args.batch, 77, unet_config["cross_attention_dim"])), jnp.float32
  )
  t = jnp.array([500] * args.batch)

  plain = jax.jit(lambda p: unet.apply({"params": p}, sample, t, text).sample)

  @jax.jit
  def batched(p, lidb_params):
    factors = adapters.model_factors(adapters.lidb_factors(lidb_params, aux), "unet")
    with adapters.batched_adapters(factors):
      return unet.apply({"params": p}, sample, t, text).sample

  @jax.jit
  def merged_forward(p, lidb_params):
    one = jax.tree.map(lambda x: x[0], lidb_params)
    merged = adapters.merge({"unet": p}, adapters.lidb_factors(one, aux))["unet"]
    return unet.apply({"params": merged}, sample, t, text).sample

  merge_only = jax.jit(
    lambda p, l: adapters.merge(
      {"unet": p}, adapters.lidb_factors(jax.tree.map(lambda x: x[0], l), aux)
    )["unet"]
  )

  base = timed(plain, params, repeats=args.repeats)
  rows = [
    ("plain forward", base),
    (
      f"batched LiDB forward ({args.batch} identities)",
      timed(batched, params, lidb, repeats=args.repeats),
    ),
    ("merge 1 identity + forward", timed(merged_forward, params, lidb, repeats=args.repeats)),
    (f"merge alone ({len(layers)} layers)", timed(merge_only, params, lidb, repeats=args.repeats)),
  ]
  print(
    f"\nUNet widths {widths}, latent {args.latent}x{args.latent}, batch {args.batch}, "
    f"{len(layers)} adapted layers, {jax.devices()[0].platform}"
  )
  print(f"{'what':45s} {'median s':>10s} {'vs plain':>9s}")
  for name, seconds in rows:
    print(f"{name:45s} {seconds:10.4f} {seconds / base:9.3f}")


if __name__ == "__main__":
  main()
