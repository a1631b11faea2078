"""The UNet's attention kernels (and per-block remat) compared by what XLA's TPU compiler makes of
SD1.5's 512 px training gradient on one chip: temporary memory, FLOPs, bytes accessed, the roofline
bound and the compile time. No TPU needed (libtpu compiles on the CPU), no weights (configs only).

Not a test: prints a table, one row per (remat, attention) pair. The program is the gradient of the
diffusion loss (fresh noise and timesteps per example, as in training) with respect to the UNet's
parameters at bf16 compute, batch `--batch` on one chip of `--topology`; einsum is diffusers'
default, the baseline.

  python -m hdb_jax.aot --write_architectures=/tmp/arch     # offline: SD1.5's configs
  python benchmarks/aot_attention.py --pretrained=/tmp/arch/sd15
  python benchmarks/aot_attention.py --pretrained=/tmp/arch/sd15 --attention=flash \\
      --remat=none,full,dots
"""

import argparse

import jax
import jax.numpy as jnp
from jax.sharding import SingleDeviceSharding

from hdb_jax import models
from hdb_jax.aot.analysis import Program, measure
from hdb_jax.aot.placement import placed
from hdb_jax.aot.report import table
from hdb_jax.aot.topology import tpu_target
from hdb_jax.diffusion.loss import per_example_loss


def gradient_program(
  sd: models.StableDiffusion, remat: str, batch: int, device: SingleDeviceSharding
) -> Program:
  """grad of the mean diffusion loss w.r.t. the UNet's parameters, as a Program on `device`."""

  def loss(unet_params, frozen, latents, input_ids, keys):
    params = {**frozen, "unet": unet_params}
    with models.rematerialized(remat, models.UNET_BLOCKS):
      return jnp.mean(per_example_loss(sd, params, None, latents, input_ids, keys))

  size, channels = sd.unet.config.sample_size, sd.unet.config.in_channels
  frozen = {"text_encoder": sd.params["text_encoder"]}
  args = (
    sd.params["unet"],
    frozen,
    jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32),
    jax.ShapeDtypeStruct((batch, sd.tokenizer.model_max_length), jnp.int32),
    jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch)),
  )
  name = f"unet_grad/{sd.attention}/remat={remat}"
  return Program(name, jax.jit(jax.grad(loss)), placed(args, device), batch, "images")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--pretrained", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
  parser.add_argument("--topology", default="v5e:2x2", help="TPU topology; one chip is used")
  parser.add_argument("--batch", type=int, default=1, help="images on the chip")
  parser.add_argument("--attention", default="einsum,chunked,dot_product,flash")
  parser.add_argument("--remat", default="none")
  args = parser.parse_args()
  target = tpu_target(args.topology)
  device = SingleDeviceSharding(target.devices[0])
  base = models.abstract_model(args.pretrained, dtype=jnp.bfloat16)
  measurements = []
  for remat in args.remat.split(","):
    for kind in args.attention.split(","):
      program = gradient_program(models.with_attention(base, kind), remat, args.batch, device)
      measurements.append(measure(program, target))
      print(table(measurements[-1:]), flush=True)
  pixels = base.resolution
  print(f"\n{args.pretrained}: the UNet's training gradient, {pixels} px, batch {args.batch}, ")
  print(f"one {target.chip.name} chip:")
  print(table(measurements))


if __name__ == "__main__":
  main()
