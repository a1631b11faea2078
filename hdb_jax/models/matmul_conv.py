"""Convolutions whose backward pass (and, on small images, forward) runs as matrix products.

XLA:CPU computes a convolution's input gradient as a convolution with a reversed, transposed
kernel. In the SD1.5 UNet's finetune step that path ran at 10-25 GFLOP/s, against 70-150 for
the forward convolution and for plain matrix products, and it took about 60% of the step
(benchmarks/finetune.py --profile). Here the backward is written as im2col matrix products:
dcols = dy W^T, then col2im (a sum of shifted slices); dW = cols^T dy, computed only when
something asks for the kernel's gradient. The forward stays XLA's convolution on large feature
maps and is an im2col product on small ones (MATMUL_FORWARD_MAX_POSITIONS); 1x1 convs are plain
products.

`matmul_conv_backward()` is a Flax interceptor context that routes every plain `nn.Conv` (no
groups, no dilation) through this. Same math as `nn.Conv`; float rounding differs (~1e-6 rel).
`unet_apply` uses it where `matmul_conv_wanted()`: traced for the CPU, unless HDB_JAX_MATMUL_CONV=0
(HDB_JAX_MATMUL_CONV=1 forces it on any backend).
"""

import contextlib
import functools
import os
from typing import Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hdb_jax.errors import UserError
from hdb_jax.runtime.platform import target_platform

Padding = tuple[tuple[int, int], ...]
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


# Below this many output positions (batch x height x width) the forward pass is an im2col matrix
# product too: XLA:CPU's convolution ran at 12-36 GFLOP/s on SD1.5's 4x4 and 8x8 levels, the
# product at ~90; at 32x32 the convolution is faster (measured on a 2-core AVX-512 CPU).
MATMUL_FORWARD_MAX_POSITIONS = 256


def _out_hw(
  x_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int], padding: Padding
) -> tuple[int, int]:
  return tuple(
    (size + lo + hi - k) // s + 1 for size, k, s, (lo, hi) in zip(x_hw, kernel_hw, strides, padding)
  )


def _forward(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding
) -> jax.Array:
  kh, kw, cin, cout = kernel.shape
  out_hw = _out_hw(x.shape[1:3], (kh, kw), strides, padding)
  if x.shape[0] * out_hw[0] * out_hw[1] <= MATMUL_FORWARD_MAX_POSITIONS or (kh, kw) == (1, 1):
    cols = _im2col(x, (kh, kw), strides, padding, out_hw)
    return jnp.einsum("bhwk,ko->bhwo", cols, kernel.reshape(kh * kw * cin, cout))
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMENSIONS)


def _im2col(
  x: jax.Array,
  kernel_hw: tuple[int, int],
  strides: tuple[int, int],
  padding: Padding,
  out_hw: tuple[int, int],
) -> jax.Array:
  """x [B, H, W, C] -> patches [B, Ho, Wo, kh*kw*C], ordered like kernel.reshape(kh*kw*C, O)."""
  padded = jnp.pad(x, ((0, 0),) + tuple(padding) + ((0, 0),))
  (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
  patches = [
    jax.lax.slice(
      padded,
      (0, a, b, 0),
      (x.shape[0], a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1, x.shape[3]),
      (1, sh, sw, 1),
    )
    for a in range(kh)
    for b in range(kw)
  ]
  return patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding
) -> jax.Array:
  """NHWC x HWIO convolution, explicit padding ((top, bottom), (left, right)); matmul backward."""
  return _forward(x, kernel, strides, padding)


def _conv2d_fwd(x, kernel, strides, padding):
  return _forward(x, kernel, strides, padding), (x, kernel)


def _conv2d_bwd(strides, padding, residuals, dy):
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  flat_kernel = kernel.reshape(kh * kw * cin, cout)
  out_hw = dy.shape[1:3]
  # The input gradient is the transpose of im2col applied to dy W^T; jax.vjp of _im2col is that
  # col2im (pads and adds), with no convolution in it.
  cols, col2im = jax.vjp(lambda v: _im2col(v, (kh, kw), strides, padding, out_hw), x)
  dcols = jnp.einsum("bhwo,ko->bhwk", dy, flat_kernel.astype(dy.dtype))
  (dx,) = col2im(dcols.astype(cols.dtype))
  dkernel = jnp.einsum("bhwk,bhwo->ko", cols, dy.astype(cols.dtype)).reshape(kernel.shape)
  return dx, dkernel.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _explicit_padding(
  padding, kernel_hw: Sequence[int], in_hw: Sequence[int], strides: Sequence[int]
) -> Padding | None:
  """flax's padding spec -> ((top, bottom), (left, right)), or None when not plain."""
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return ((0, 0), (0, 0))
    if padding.upper() == "SAME":
      return tuple(jax.lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides), "SAME"))
    return None
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
  return pads if len(pads) == 2 and all(len(p) == 2 for p in pads) else None


def _plain_conv_call(module: nn.Conv, x: jax.Array) -> jax.Array | None:
  """nn.Conv.__call__ through conv2d, or None when the module uses something conv2d lacks."""
  kernel_hw = tuple(module.kernel_size)
  strides = (
    tuple(module.strides or (1, 1))
    if not isinstance(module.strides, int)
    else (module.strides,) * 2
  )
  if (
    x.ndim != 4
    or len(kernel_hw) != 2
    or module.feature_group_count != 1
    or module.input_dilation not in (None, 1, (1, 1))
    or module.kernel_dilation not in (None, 1, (1, 1))
    or module.mask is not None
  ):
    return None
  padding = _explicit_padding(module.padding, kernel_hw, x.shape[1:3], strides)
  params = module.variables.get("params", {})
  if padding is None or "kernel" not in params:
    return None
  kernel = params["kernel"]
  dtype = module.dtype or jnp.result_type(x, kernel)
  y = conv2d(x.astype(dtype), kernel.astype(dtype), strides, padding)
  if module.use_bias:
    y = y + params["bias"].astype(dtype)
  return y


def matmul_conv_wanted() -> bool:
  """HDB_JAX_MATMUL_CONV: '1' on, '0' off, unset or 'auto': on when the platform traced for is the
  CPU (runtime.platform: JAX's backend, or the TPU a program is compiled for ahead of time)."""
  setting = os.environ.get("HDB_JAX_MATMUL_CONV", "auto").strip().lower()
  if setting not in ("auto", "0", "1"):
    raise UserError(f"HDB_JAX_MATMUL_CONV must be auto, 0 or 1, not {setting!r}")
  return setting == "1" or (setting == "auto" and target_platform() == "cpu")


@contextlib.contextmanager
def matmul_conv_backward() -> Iterator[None]:
  """Within this context, plain flax `nn.Conv` layers use `conv2d` (matmul backward)."""

  def interceptor(next_fun, args, kwargs, context):
    if (
      context.method_name == "__call__"
      and isinstance(context.module, nn.Conv)
      and not kwargs
      and len(args) == 1
    ):
      y = _plain_conv_call(context.module, args[0])
      if y is not None:
        return y
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield
