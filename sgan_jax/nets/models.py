"""Generators and discriminators.

Every discriminator maps images to `num_classes` logits; the SGAN heads (softmax for the class,
D(x) = Z / (Z + 1) with Z = sum(exp(logits)) for real/fake) live in `sgan_jax.methods.losses`. With
`return_features=True` it also returns its last hidden layer, for feature matching.

- "tutorial": the Keras tutorial's DCGAN-style pair (../shared/seed/sgan_tutorial.zh.txt),
  Keras' initialisers, for any H x W x C with H and W divisible by 4.
- "improved": Salimans et al. (2016), openai/improved-gan: for 28x28x1 the weight-normalised MLP
  discriminator with Gaussian noise and the batch-normalised MLP generator; for 32x32x3 their
  CIFAR-10 / SVHN convolutional pair.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sgan_jax.nets import conv
from sgan_jax.nets.layers import (
    BatchStatNorm,
    Conv,
    ConvTranspose,
    GaussianNoise,
    WeightNormConv,
    WeightNormDense,
    glorot_uniform,
)
from sgan_jax.runs.errors import ConfigError

MODELS = ("tutorial", "improved")
Z_DISTRIBUTIONS = ("normal", "uniform")
OUTPUT_ACTIVATIONS = {"symmetric": nn.tanh, "unit": nn.sigmoid}
SUPPORTED_SHAPES = ((28, 28, 1), (32, 32, 3))


def check_config(config) -> None:
    """Checks the networks' keys; raises ConfigError naming the key."""
    choices = dict(model=MODELS, z_distribution=Z_DISTRIBUTIONS, conv_impl=conv.IMPLS)
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {config[key]!r}")
    if not config.z_dim > 0:
        raise ConfigError("z_dim", f"must be > 0; got {config.z_dim}")
    if not config.init_batch_size >= 0:
        raise ConfigError("init_batch_size", f"must be >= 0; got {config.init_batch_size}")
    if not config.generator_bn_epsilon > 0:
        raise ConfigError("generator_bn_epsilon", f"must be > 0; got {config.generator_bn_epsilon}")
    for key in ("d_dropout", "d_input_dropout"):
        if not 0 <= config[key] < 1:
            raise ConfigError(key, f"must be in [0, 1); got {config[key]}")
    widths = tuple(config.d_conv_widths)
    if len(widths) != 2 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError("d_conv_widths", f"must be two positive integers; got {widths}")


def sample_latent(key, num: int, dim: int, distribution: str):
    """The generator's input: N(0, 1) ("normal", the tutorial) or U[0, 1) ("uniform")."""
    if distribution == "normal":
        return jax.random.normal(key, (num, dim))
    return jax.random.uniform(key, (num, dim))


def leaky_relu(x):
    return nn.leaky_relu(x, negative_slope=0.2)


class TutorialGenerator(nn.Module):
    image_shape: Sequence[int]
    image_range: str = "symmetric"
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z, train: bool = True):
        height, width, channels = self.image_shape
        x = nn.Dense((height // 4) * (width // 4) * 256, kernel_init=glorot_uniform)(z)
        x = leaky_relu(x).reshape(-1, height // 4, width // 4, 256)
        x = leaky_relu(ConvTranspose(128, (3, 3), (2, 2), self.conv_impl)(x))
        x = leaky_relu(ConvTranspose(128, (3, 3), (2, 2), self.conv_impl)(x))
        x = leaky_relu(ConvTranspose(channels, (3, 3), (1, 1), self.conv_impl)(x))
        x = Conv(channels, (7, 7), impl=self.conv_impl)(x)
        return OUTPUT_ACTIVATIONS[self.image_range](x)


class TutorialDiscriminator(nn.Module):
    num_classes: int
    dropout_rate: float = 0.4
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool, return_features: bool = False):
        for _ in range(3):
            x = leaky_relu(Conv(128, (3, 3), (2, 2), self.conv_impl)(x))
        features = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        logits = nn.Dense(self.num_classes, kernel_init=glorot_uniform)(x)
        return (logits, features) if return_features else logits


class ImprovedMLPGenerator(nn.Module):
    """z -> 500 -> 500 (softplus, batch norm) -> pixels (weight-normalised)."""

    image_shape: Sequence[int]
    image_range: str = "unit"
    hidden_sizes: Sequence[int] = (500, 500)
    weight_norm: bool = True
    data_init: bool = False  # the first Improved-GAN MNIST code initialises the output from data
    bn_scale: bool = False  # Bad GAN's PyTorch BatchNorm1d has one
    bn_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, z, train: bool = True):
        x = z
        for size in self.hidden_sizes:
            x = nn.Dense(size, use_bias=False, kernel_init=glorot_uniform)(x)
            x = nn.softplus(BatchStatNorm(self.bn_epsilon, self.bn_scale)(x))
        num_pixels = math.prod(self.image_shape)
        if self.weight_norm:
            x = WeightNormDense(num_pixels, data_init=self.data_init, train_scale=True)(x)
        else:
            x = nn.Dense(num_pixels, kernel_init=glorot_uniform)(x)
        return OUTPUT_ACTIVATIONS[self.image_range](x).reshape(-1, *self.image_shape)


class ImprovedMLPDiscriminator(nn.Module):
    """784-1000-500-250-250-250-classes, ReLU, weight norm, Gaussian noise in training."""

    num_classes: int
    hidden_sizes: Sequence[int] = (1000, 500, 250, 250, 250)
    input_noise: float = 0.3
    hidden_noise: float = 0.5
    weight_norm: bool = True

    def _dense(self, features, train_scale):
        if self.weight_norm:
            return WeightNormDense(features, train_scale=train_scale, kernel_stddev=0.1)
        return nn.Dense(features, kernel_init=glorot_uniform)

    @nn.compact
    def __call__(self, x, train: bool, return_features: bool = False):
        x = GaussianNoise(self.input_noise)(x.reshape(x.shape[0], -1), train)
        features = x
        for size in self.hidden_sizes:
            features = nn.relu(self._dense(size, train_scale=False)(x))
            x = GaussianNoise(self.hidden_noise)(features, train)
        logits = self._dense(self.num_classes, train_scale=True)(x)
        return (logits, features) if return_features else logits


# Theano's alignment in the Improved-GAN CIFAR-10 / SVHN code: a stride-2 3x3 convolution with
# pad=1 on both sides, and a stride-2 5x5 transposed convolution that is the gradient of a
# pad=2 ("half") convolution (the dilated input padded 2 before, 3 after).
_THEANO_STRIDE2_PAD = ((1, 1), (1, 1))
_THEANO_DECONV_PAD_LOW = 2
# nn.weight_norm's 1e-6 under the square root of the squared norm.
_WN_EPSILON = 1e-6


class ImprovedConvGenerator(nn.Module):
    """The Improved-GAN CIFAR-10 / SVHN generator (train_cifar_feature_matching.py's
    gen_layers): z -> 4x4x512 -> 8x8x256 -> 16x16x128 (batch norm without scale, ReLU) ->
    32x32x3 through a weight-normalised transposed convolution with a trained scale."""

    image_shape: Sequence[int]
    image_range: str = "symmetric"
    weight_norm: bool = True
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, z, train: bool = True):
        height, width, channels = self.image_shape
        normal = nn.initializers.normal(0.05)
        x = nn.Dense((height // 8) * (width // 8) * 512, use_bias=False, kernel_init=normal)(z)
        x = nn.relu(BatchStatNorm()(x)).reshape(-1, height // 8, width // 8, 512)
        for features in (256, 128):
            # nn.batch_norm deletes the layer's own bias: BatchStatNorm carries one.
            x = ConvTranspose(
                features,
                (5, 5),
                (2, 2),
                self.conv_impl,
                kernel_init=normal,
                use_bias=False,
                padding=_THEANO_DECONV_PAD_LOW,
            )(x)
            x = nn.relu(BatchStatNorm()(x))
        if self.weight_norm:
            out = WeightNormConv(
                channels,
                kernel_size=(5, 5),
                strides=(2, 2),
                transpose=True,
                init_scale=0.1,
                norm_epsilon=_WN_EPSILON,
                padding=_THEANO_DECONV_PAD_LOW,
                impl=self.conv_impl,
            )
        else:
            out = ConvTranspose(channels, (5, 5), (2, 2), self.conv_impl, kernel_init=normal)
        return OUTPUT_ACTIVATIONS[self.image_range](out(x))


class ImprovedConvDiscriminator(nn.Module):
    """The Improved-GAN CIFAR-10 / SVHN discriminator (disc_layers): dropout 0.2, 3 convs of
    widths[0], dropout 0.5, 3 of widths[1], dropout 0.5, a valid conv, two NIN layers, global
    mean pooling, 10 logits; leaky ReLU 0.2; weight norm with the hidden scales frozen at their
    data-dependent values (nn.weight_norm's train_g=False) and the output's trained."""

    num_classes: int
    input_dropout: float = 0.2
    dropout_rate: float = 0.5
    weight_norm: bool = True
    conv_impl: str = "auto"
    widths: Sequence[int] = (96, 192)  # CIFAR-10's; SVHN's are (64, 128)

    def _conv(self, features, kernel_size=(3, 3), strides=(1, 1), padding="SAME"):
        if strides != (1, 1):
            padding = _THEANO_STRIDE2_PAD
        if self.weight_norm:
            return WeightNormConv(
                features,
                kernel_size=kernel_size,
                strides=strides,
                padding=padding,
                train_scale=False,
                norm_epsilon=_WN_EPSILON,
                impl=self.conv_impl,
            )
        if padding == "VALID":
            return nn.Conv(features, kernel_size, strides, padding="VALID")
        explicit = None if padding == "SAME" else padding
        return Conv(features, kernel_size, strides, self.conv_impl, padding=explicit)

    @nn.compact
    def __call__(self, x, train: bool, return_features: bool = False):
        x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        for features in self.widths:
            x = leaky_relu(self._conv(features)(x))
            x = leaky_relu(self._conv(features)(x))
            x = leaky_relu(self._conv(features, strides=(2, 2))(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        last = self.widths[-1]
        x = leaky_relu(self._conv(last, padding="VALID")(x))
        x = leaky_relu(self._conv(last, kernel_size=(1, 1))(x))  # nn.NINLayer
        x = leaky_relu(self._conv(last, kernel_size=(1, 1))(x))
        features = jnp.mean(x, axis=(1, 2))  # ll.GlobalPoolLayer: what feature matching reads
        if self.weight_norm:
            logits = WeightNormDense(self.num_classes, init_scale=0.1, norm_epsilon=_WN_EPSILON)
            logits = logits(features)
        else:
            logits = nn.Dense(self.num_classes)(features)
        return (logits, features) if return_features else logits


def create_models(config: ml_collections.ConfigDict, image_shape, num_classes: int):
    """The (generator, discriminator) pair that `config.model` names for this image shape."""
    image_shape = tuple(image_shape)
    if image_shape not in SUPPORTED_SHAPES:
        raise ValueError(f"image shape {image_shape} is not one of {SUPPORTED_SHAPES}")
    if config.model == "tutorial":
        return (
            TutorialGenerator(image_shape, config.image_range, config.conv_impl),
            TutorialDiscriminator(num_classes, config.d_dropout, config.conv_impl),
        )
    if config.model == "improved" and image_shape == (28, 28, 1):
        return (
            ImprovedMLPGenerator(
                image_shape,
                config.image_range,
                weight_norm=config.weight_norm,
                data_init=config.generator_data_init,
                bn_scale=config.generator_bn_scale,
                bn_epsilon=config.generator_bn_epsilon,
            ),
            ImprovedMLPDiscriminator(
                num_classes,
                input_noise=config.d_input_noise,
                hidden_noise=config.d_hidden_noise,
                weight_norm=config.weight_norm,
            ),
        )
    if config.model == "improved":
        return (
            ImprovedConvGenerator(
                image_shape, config.image_range, config.weight_norm, config.conv_impl
            ),
            ImprovedConvDiscriminator(
                num_classes,
                input_dropout=config.d_input_dropout,
                dropout_rate=config.d_dropout,
                weight_norm=config.weight_norm,
                conv_impl=config.conv_impl,
                widths=tuple(config.d_conv_widths),
            ),
        )
    raise ValueError(f"model must be one of {MODELS}, got {config.model!r}")
