"""Exact-likelihood density models of images, for Bad GAN's low-density term.

log p(x) is autoregressive over pixels in raster order, each pixel a mixture of discretized
logistics over `levels` values in [-1, 1] (PixelCNN++'s likelihood, which Bad GAN's
`discretized_mix_logistic_loss_c1` computes): it is differentiable in x, so a generator can be
pushed away from where the model puts mass.

- "made": MADE (Germain et al. 2015), masked dense layers; one pass gives every pixel's
  parameters.
- "pixelcnn": PixelCNN++ (Salimans et al. 2017) for one-channel images, the model Bad GAN's
  MNIST code loads (kimiyoung/ssl_bad_gan `pixelcnn.py`: `PixelCNN(nr_resnet=3,
  disable_third=True, n_channel=1)`, 160 filters, 10 logistics), or a smaller one. Two streams
  keep it autoregressive without a blind spot: `u` sees the rows above a pixel, `ul` those and
  the pixels left of it; each scale is `resnets` gated residual blocks, and the down pass mirrors
  the up pass with skips. Unlike the original: plain convolutions (it uses weight-normalised
  ones with data-dependent init); no dropout, as Bad GAN builds its MNIST model (dropout_p=0.0).
"""

import math
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax.data.input_pipeline import scale_images
from sgan_jax.nets import conv

# The pixels a density models: Bad GAN's (images - 0.5) / 0.5, in [-1, 1].
IMAGE_RANGE = "symmetric"
# A trained density's files: its parameters, what they model, the training images it never saw.
DENSITY_FILE, DENSITY_INFO, HELD_OUT_FILE = "density.msgpack", "density.json", "held_out.npy"


def discretized_logistic_log_prob(x, logit_weights, means, log_scales, levels: int):
    """log p of each value of `x` (in [-1, 1], on `levels` evenly spaced values) under a
    mixture of discretized logistics; the parameters have a trailing mixture axis. The lowest
    and highest values take the tails, so the probabilities of the `levels` values sum to 1."""
    half_bin = 1.0 / (levels - 1)
    log_scales = jnp.maximum(log_scales, -7.0)
    centered = x[..., None] - means
    inverse_scale = jnp.exp(-log_scales)
    plus_in = inverse_scale * (centered + half_bin)
    minus_in = inverse_scale * (centered - half_bin)
    log_cdf_plus = plus_in - jax.nn.softplus(plus_in)  # log sigmoid(plus_in)
    log_one_minus_cdf_minus = -jax.nn.softplus(minus_in)
    cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(minus_in)
    mid_in = inverse_scale * centered
    # Where the bin's mass underflows, the density at its centre times its width.
    log_pdf_mid = mid_in - log_scales - 2.0 * jax.nn.softplus(mid_in) + jnp.log(2 * half_bin)
    inner = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)), log_pdf_mid)
    edge = 1.0 - half_bin / 2
    per_component = jnp.where(
        x[..., None] < -edge,
        log_cdf_plus,
        jnp.where(x[..., None] > edge, log_one_minus_cdf_minus, inner),
    )
    return jax.nn.logsumexp(per_component + jax.nn.log_softmax(logit_weights, axis=-1), axis=-1)


def _score(x, params, levels: int, per_pixel: bool, mixture: bool):
    """A model's output from its pixels' mixture parameters (weights, means, log scales)."""
    if mixture:
        return params
    log_probs = discretized_logistic_log_prob(
        x, params[..., 0, :], params[..., 1, :], params[..., 2, :], levels
    )
    return log_probs if per_pixel else jnp.sum(log_probs, axis=-1)


def _made_masks(num_inputs: int, hidden_sizes, rng: np.random.Generator):
    """MADE's masks for raster order: unit k of a hidden layer sees inputs < its degree, and
    output d sees hidden units of degree < d + 1, so output d depends on inputs 0 .. d - 1."""
    degrees = [np.arange(1, num_inputs + 1)]
    for size in hidden_sizes:
        degrees.append(rng.integers(1, num_inputs, size))
    masks = [
        (d_in[:, None] <= d_out[None, :])
        for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)
    ]
    output = degrees[-1][:, None] < degrees[0][None, :]
    return [m.astype(np.float32) for m in masks], output.astype(np.float32)


class MaskedDense(nn.Module):
    features: int
    mask: np.ndarray

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), self.mask.shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (kernel * self.mask) + bias


class MADE(nn.Module):
    """log p(x) of flattened images in [-1, 1] with `levels` values a pixel."""

    num_pixels: int
    hidden_sizes: tuple = (1024, 1024)
    mixtures: int = 5
    levels: int = 256
    mask_seed: int = 0

    @nn.compact
    def __call__(self, images, per_pixel: bool = False, mixture: bool = False):
        """log p of each image (of each pixel, given the ones before it, with per_pixel; with
        mixture, each pixel's mixture parameters, (batch, pixels, 3, mixtures))."""
        x = images.reshape(images.shape[0], -1)
        hidden_masks, output_mask = _made_masks(
            self.num_pixels, self.hidden_sizes, np.random.default_rng(self.mask_seed)
        )
        h = x
        for size, mask in zip(self.hidden_sizes, hidden_masks, strict=True):
            h = nn.relu(MaskedDense(size, mask)(h))
        # Pixel d's 3 K parameters (mixture weights, means, log scales) share its mask.
        width = 3 * self.mixtures
        params = MaskedDense(self.num_pixels * width, np.repeat(output_mask, width, axis=1))(h)
        params = params.reshape(x.shape[0], self.num_pixels, 3, self.mixtures)
        return _score(x, params, self.levels, per_pixel, mixture)


def _concat_elu(x):
    return jax.nn.elu(jnp.concatenate([x, -x], axis=-1))


def _down_shift(x):
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def _right_shift(x):
    return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


class ShiftedConv(nn.Module):
    """A convolution whose output at (i, j) reads rows <= i only (`right=False`: the centred
    columns around j; `right=True`: columns <= j). `transpose` doubles the size instead (stride
    2), keeping the same causality."""

    features: int
    kernel_size: tuple = (2, 3)
    right: bool = False
    stride: int = 1
    transpose: bool = False

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.transpose:
            # pad_low=1 keeps the rows of PyTorch's output_padding=1 deconvolution, cropped
            # as pixelcnn.py crops it (the leading rows; centred or leading columns).
            return conv.conv_transpose2d(x, kernel, (2, 2), pad_low=1) + bias
        left = kw - 1 if self.right else (kw - 1) // 2
        padding = ((kh - 1, 0), (left, kw - 1 - left))
        return conv.conv2d(x, kernel, (self.stride,) * 2, padding=padding) + bias


class GatedResnet(nn.Module):
    """x + a * sigmoid(b), [a, b] = conv(concat_elu(conv(concat_elu(x)) + nin(skip)))."""

    kernel_size: tuple
    right: bool

    @nn.compact
    def __call__(self, x, skip=None):
        filters = x.shape[-1]
        h = ShiftedConv(filters, self.kernel_size, self.right)(_concat_elu(x))
        if skip is not None:
            h = h + nn.Dense(filters)(_concat_elu(skip))
        h = ShiftedConv(2 * filters, self.kernel_size, self.right)(_concat_elu(h))
        a, b = jnp.split(h, 2, axis=-1)
        return x + a * jax.nn.sigmoid(b)


class PixelCNN(nn.Module):
    """log p(x) of flattened square images in [-1, 1] with `levels` values a pixel."""

    filters: int = 160
    resnets: int = 3
    scales: int = 2
    mixtures: int = 10
    levels: int = 256

    def _up_pass(self, x):
        f = self.filters
        u = [_down_shift(ShiftedConv(f, (2, 3))(x))]
        ul = [
            _down_shift(ShiftedConv(f, (1, 3))(x))
            + _right_shift(ShiftedConv(f, (2, 1), right=True)(x))
        ]
        for scale in range(self.scales):
            if scale:
                u.append(ShiftedConv(f, (2, 3), stride=2)(u[-1]))
                ul.append(ShiftedConv(f, (2, 2), right=True, stride=2)(ul[-1]))
            for _ in range(self.resnets):
                u.append(GatedResnet((2, 3), False)(u[-1]))
                ul.append(GatedResnet((2, 2), True)(ul[-1], u[-1]))
        return u, ul

    @nn.compact
    def __call__(self, images, per_pixel: bool = False, mixture: bool = False):
        """log p of each image (of each pixel, given the ones before it, with per_pixel; with
        mixture, each pixel's mixture parameters, (batch, pixels, 3, mixtures))."""
        side = math.isqrt(images[0].size)
        x = images.reshape(images.shape[0], side, side, 1)
        # A channel of ones lets the shifted convolutions tell padding from black pixels.
        u_list, ul_list = self._up_pass(jnp.concatenate([x, jnp.ones_like(x)], axis=-1))
        u, ul = u_list.pop(), ul_list.pop()
        for scale in range(self.scales):
            if scale:
                u = ShiftedConv(self.filters, (2, 3), transpose=True)(u)
                ul = ShiftedConv(self.filters, (2, 2), right=True, transpose=True)(ul)
            for _ in range(self.resnets + (1 if scale else 0)):
                u = GatedResnet((2, 3), False)(u, u_list.pop())
                skip = jnp.concatenate([u, ul_list.pop()], axis=-1)
                ul = GatedResnet((2, 2), True)(ul, skip)
        params = nn.Dense(3 * self.mixtures)(jax.nn.elu(ul))
        params = params.reshape(x.shape[0], side * side, 3, self.mixtures)
        return _score(images.reshape(x.shape[0], -1), params, self.levels, per_pixel, mixture)


def pixel_log_probs(model, params, images):
    """Each pixel's log-probability given the pixels before it in raster order."""
    return model.apply(params, images, per_pixel=True)


def sample(model, params, key, num: int, num_pixels: int) -> jax.Array:
    """`num` flattened images in [-1, 1] drawn from the model in raster order: each pixel from
    its mixture given the pixels drawn before it, one pass of the model a pixel. A logistic
    draw rounded to the nearest of the `levels` values, the ends taking the tails, is a draw of
    the discretized logistic the likelihood scores."""
    levels = model.levels

    def draw_pixel(d, images):
        component_key, logistic_key = jax.random.split(jax.random.fold_in(key, d))
        weights, means, log_scales = jnp.moveaxis(
            model.apply(params, images, mixture=True)[:, d], 1, 0
        )
        component = jax.random.categorical(component_key, weights)[:, None]
        mean = jnp.take_along_axis(means, component, axis=-1)[:, 0]
        log_scale = jnp.take_along_axis(log_scales, component, axis=-1)[:, 0]
        u = jax.random.uniform(logistic_key, (num,), minval=1e-6, maxval=1 - 1e-6)
        value = mean + jnp.exp(log_scale) * (jnp.log(u) - jnp.log1p(-u))
        level = jnp.clip(jnp.round((value + 1) / 2 * (levels - 1)), 0, levels - 1)
        return images.at[:, d].set(2 * level / (levels - 1) - 1)

    return jax.lax.fori_loop(0, num_pixels, draw_pixel, jnp.zeros((num, num_pixels)))


def model_from_params(params) -> nn.Module:
    """The MADE or PixelCNN that `params` (as its init made them) belong to, read off their
    names and shapes, so a density file needs nothing beside it to be applied."""
    layers = params["params"]
    if "MaskedDense_0" in layers:
        names = sorted(layers, key=lambda name: int(name.split("_")[-1]))
        num_pixels = layers[names[0]]["kernel"].shape[0]
        hidden = tuple(layers[name]["kernel"].shape[1] for name in names[:-1])
        mixtures = layers[names[-1]]["kernel"].shape[1] // (3 * num_pixels)
        return MADE(num_pixels=num_pixels, hidden_sizes=hidden, mixtures=mixtures)
    # PixelCNN: 4 S - 1 shifted convolutions and 4 R S + 2 S - 2 gated blocks at S scales.
    convs = sum(name.startswith("ShiftedConv_") for name in layers)
    blocks = sum(name.startswith("GatedResnet_") for name in layers)
    scales = (convs + 1) // 4
    return PixelCNN(
        filters=layers["ShiftedConv_0"]["kernel"].shape[-1],
        resnets=(blocks - 2 * scales + 2) // (4 * scales),
        scales=scales,
        mixtures=layers["Dense_0"]["kernel"].shape[-1] // 3,
    )


def image_log_probs(model, params, images, batch_size: int = 500) -> np.ndarray:
    """log p of each uint8 image of `images` under the model, on the [-1, 1] pixels it reads,
    in batches of `batch_size`."""
    apply = jax.jit(model.apply)
    return np.concatenate(
        [
            np.asarray(apply(params, scale_images(batch, IMAGE_RANGE).reshape(len(batch), -1)))
            for batch in (
                images[start : start + batch_size] for start in range(0, len(images), batch_size)
            )
        ]
    )


def density_files(folder: str) -> list[str]:
    return [os.path.join(folder, name) for name in (DENSITY_FILE, DENSITY_INFO, HELD_OUT_FILE)]


def read_params(path: str):
    """The parameters of a density.msgpack, as the model's init made them."""
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())
