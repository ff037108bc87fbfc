"""Exact-likelihood density models of images, for Bad GAN's low-density term.

log p(x) is autoregressive over pixels in raster order, each pixel a mixture of discretized
logistics over `levels` values in [-1, 1] (PixelCNN++'s likelihood, which Bad GAN's
`discretized_mix_logistic_loss_c1` computes): it is differentiable in x, so a generator can be
pushed away from where the model puts mass.

- "made": MADE (Germain et al. 2015), masked dense layers; one pass gives every pixel's
  parameters.
"""

import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
    def __call__(self, images, per_pixel: bool = False):
        """log p of each image (of each pixel, given the ones before it, with per_pixel)."""
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
        log_probs = discretized_logistic_log_prob(
            x, params[..., 0, :], params[..., 1, :], params[..., 2, :], self.levels
        )
        return log_probs if per_pixel else jnp.sum(log_probs, axis=-1)


def pixel_log_probs(model, params, images):
    """Each pixel's log-probability given the pixels before it in raster order."""
    return model.apply(params, images, per_pixel=True)


def made_from_params(params) -> MADE:
    """The MADE that `params` (as MADE.init made them) belong to, read off their shapes."""
    layers = params["params"]
    names = sorted(layers, key=lambda name: int(name.split("_")[-1]))
    num_pixels = layers[names[0]]["kernel"].shape[0]
    hidden = tuple(layers[name]["kernel"].shape[1] for name in names[:-1])
    mixtures = layers[names[-1]]["kernel"].shape[1] // (3 * num_pixels)
    return MADE(num_pixels=num_pixels, hidden_sizes=hidden, mixtures=mixtures)


def density_files(folder: str) -> list[str]:
    return [os.path.join(folder, name) for name in (DENSITY_FILE, DENSITY_INFO, HELD_OUT_FILE)]


def read_params(path: str):
    """The parameters of a density.msgpack, as MADE.init made them."""
    with open(path, "rb") as f:
        return flax.serialization.msgpack_restore(f.read())
