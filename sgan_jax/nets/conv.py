"""2-D convolutions written so that XLA:CPU runs them fast, each equal to its `lax` reference.

XLA:CPU runs matrix products well but lowers some convolution gradients to slow loops: the
kernel gradient of a stride-2 transposed convolution ran about 15x slower than the same maths as
matrix products. So on CPU every convolution here becomes matrix products over shifted views:

- `im2col`: gather the kernel's taps into channels, then one product (most convolutions);
- `shift_add`: one product to all taps' outputs, then add the shifted outputs (few output
  channels, where `im2col` would make a thin product);
- `subpixel`: a stride-s transposed convolution split into its s*s output phases, each a small
  stride-1 convolution over exactly the kernel taps that reach it (no zero taps).

`impl="xla"` calls `lax` directly (best on GPU/TPU, where cuDNN and friends do the work).
Layout is NHWC with HWIO kernels, as in flax. Padding is "SAME" unless a layer gives it
explicitly, as the Improved-GAN CIFAR-10 and SVHN networks do to match Theano's alignment
(`pad=1` on both sides of a stride-2 convolution, where "SAME" pads only after).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "xla", "matmul")


def resolve_impl(impl: str) -> str:
    """'auto' picks the matrix-product forms on CPU and lax's convolutions elsewhere."""
    if impl not in IMPLS:
        raise ValueError(f"conv_impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return impl


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """The (low, high) padding of lax's "SAME" for a forward convolution."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _im2col_matmul(x, kernel, strides):
    """Correlation of an already padded `x` ("VALID") as one product over gathered taps."""
    kh, kw, cin, cout = kernel.shape
    batch, height, width, _ = x.shape
    sh, sw = strides
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    taps = [
        x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    y = jnp.dot(patches.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, cout))
    return y.reshape(batch, out_h, out_w, cout)


def _shift_add(x, kernel, padding):
    """Stride-1 correlation as one product to every tap's output, then shifted adds."""
    kh, kw, cin, cout = kernel.shape
    batch, height, width, _ = x.shape
    (pt, pb), (pl, pr) = padding
    out_h, out_w = height + pt + pb - kh + 1, width + pl + pr - kw + 1
    per_tap = jnp.dot(x.reshape(-1, cin), kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
    per_tap = per_tap.reshape(batch, height, width, kh * kw, cout)
    per_tap = jnp.pad(per_tap, ((0, 0), (pt, pb), (pl, pr), (0, 0), (0, 0)))
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            out = out + per_tap[:, i : i + out_h, j : j + out_w, i * kw + j]
    return out


def conv2d(x, kernel, strides: Sequence[int] = (1, 1), impl: str = "auto", padding=None):
    """Equals `lax.conv_general_dilated(x, kernel, strides, padding)` (what `nn.Conv` computes);
    `padding` is ((low, high), (low, high)), or None for "SAME"."""
    strides = tuple(strides)
    kh, kw, cin, cout = kernel.shape
    if padding is None:
        padding = (
            same_padding(x.shape[1], kh, strides[0]),
            same_padding(x.shape[2], kw, strides[1]),
        )
    padding = tuple(tuple(p) for p in padding)
    if resolve_impl(impl) == "xla":
        return lax.conv_general_dilated(
            x, kernel, strides, padding, dimension_numbers=DIMENSION_NUMBERS
        )
    if strides == (1, 1) and kh * kw * cout <= cin:
        return _shift_add(x, kernel, padding)
    return _im2col_matmul(jnp.pad(x, ((0, 0), *padding, (0, 0))), kernel, strides)


def _phase_taps(kernel_size: int, stride: int, phase: int, pad_low: int):
    """Kernel taps that reach output phase `phase`, and the input offset of the first one."""
    taps = [k for k in range(kernel_size) if (phase + k - pad_low) % stride == 0]
    first_offset = (phase + taps[0] - pad_low) // stride if taps else 0
    return taps, first_offset


def _transpose_pad_low(kernel_size: int, stride: int) -> int:
    """Low padding of the dilated input in lax.conv_transpose(..., "SAME")."""
    pad_len = kernel_size + stride - 2
    return kernel_size - 1 if stride > kernel_size - 1 else int(np.ceil(pad_len / 2))


def _phase_conv(x, kernel, taps_h, taps_w, first_h, first_w):
    """One output phase: a stride-1 correlation of `x` with the taps that reach it."""
    batch, height, width, _ = x.shape
    cout = kernel.shape[-1]
    if not taps_h or not taps_w:
        return jnp.zeros((batch, height, width, cout), x.dtype)
    sub_kernel = kernel[np.array(taps_h)][:, np.array(taps_w)]
    last_h, last_w = first_h + len(taps_h) - 1, first_w + len(taps_w) - 1
    # Output m reads inputs m + first .. m + last; pad so every read is in range.
    padded = jnp.pad(
        x,
        (
            (0, 0),
            (max(0, -first_h), max(0, last_h)),
            (max(0, -first_w), max(0, last_w)),
            (0, 0),
        ),
    )
    start_h, start_w = first_h + max(0, -first_h), first_w + max(0, -first_w)
    window = padded[
        :, start_h : start_h + height + len(taps_h) - 1, start_w : start_w + width + len(taps_w) - 1
    ]
    return _im2col_matmul(window, sub_kernel, (1, 1))


def conv_transpose2d(
    x, kernel, strides: Sequence[int] = (1, 1), impl: str = "auto", pad_low: int | None = None
):
    """Equals `lax.conv_transpose(x, kernel, strides, "SAME")`, what `nn.ConvTranspose` computes,
    whose output is `strides` times the input. `pad_low` (the dilated input's low padding) moves
    the alignment: "SAME" pads k - 1 - (k - 1) // 2 for these odd kernels, Theano's transpose of
    a `pad=(k - 1) // 2` convolution pads (k - 1) // 2."""
    strides = tuple(strides)
    kh, kw, _, cout = kernel.shape
    sh, sw = strides
    if pad_low is None:
        pad_h, pad_w = _transpose_pad_low(kh, sh), _transpose_pad_low(kw, sw)
    else:
        pad_h = pad_w = pad_low
    if resolve_impl(impl) == "xla":
        # The high padding that makes the output `strides` times the input.
        padding = [(pad_h, sh - 2 + kh - pad_h), (pad_w, sw - 2 + kw - pad_w)]
        return lax.conv_transpose(x, kernel, strides, padding, dimension_numbers=DIMENSION_NUMBERS)
    if strides == (1, 1) and pad_low is None:
        # lax pads (k-1)//2 low and k//2 high here: the same as a "SAME" forward correlation
        # for odd kernels, which is all this code base uses.
        if kh % 2 and kw % 2:
            return conv2d(x, kernel, (1, 1), impl)
    batch, height, width, _ = x.shape
    rows = []
    for phase_h in range(sh):
        taps_h, first_h = _phase_taps(kh, sh, phase_h, pad_h)
        row = []
        for phase_w in range(sw):
            taps_w, first_w = _phase_taps(kw, sw, phase_w, pad_w)
            row.append(_phase_conv(x, kernel, taps_h, taps_w, first_h, first_w))
        rows.append(jnp.stack(row, axis=3))  # (B, H, W, sw, C)
    out = jnp.stack(rows, axis=2)  # (B, H, sh, W, sw, C)
    return out.reshape(batch, height * sh, width * sw, cout)
