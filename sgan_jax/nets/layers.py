"""Linen layers the models are built from.

`Conv` and `ConvTranspose` hold exactly the parameters of `nn.Conv` / `nn.ConvTranspose`
("SAME" padding) and compute the same maths through `sgan_jax.nets.conv`, which is fast on CPU.

The weight-normalised layers follow Salimans & Kingma (2016) as the Improved-GAN code uses them:
w = g * v / ||v||, with a data-dependent initialisation that gives every unit zero mean and unit
variance on the batch passed to `init`. flax's `nn.WeightNorm` has no data-dependent
initialisation, hence these few lines of our own.
"""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from sgan_jax.nets import conv

# Keras' default initialisers, which the tutorial's models use.
glorot_uniform = nn.initializers.glorot_uniform()
zeros = nn.initializers.zeros


class _Convolution(nn.Module):
    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    impl: str = "auto"
    kernel_init: Callable = glorot_uniform
    bias_init: Callable = zeros
    use_bias: bool = True
    # None: "SAME". Conv: ((low, high), (low, high)); ConvTranspose: the dilated input's low
    # padding (sgan_jax.nets.conv).
    padding: Any = None
    operation: ClassVar[Callable]

    @nn.compact
    def __call__(self, x):
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape)
        y = type(self).operation(x, kernel, self.strides, self.impl, self.padding)
        if not self.use_bias:
            return y
        return y + self.param("bias", self.bias_init, (self.features,))


class Conv(_Convolution):
    """`nn.Conv(features, kernel_size, strides, padding="SAME")`, computed by `conv.conv2d`."""

    operation = staticmethod(conv.conv2d)


class ConvTranspose(_Convolution):
    """`nn.ConvTranspose(features, kernel_size, strides, padding="SAME")`, via `conv`."""

    operation = staticmethod(conv.conv_transpose2d)


class GaussianNoise(nn.Module):
    """Adds N(0, stddev^2) noise in training, from the 'noise' RNG stream."""

    stddev: float

    @nn.compact
    def __call__(self, x, train: bool):
        if not train or self.stddev == 0:
            return x
        return x + self.stddev * jax.random.normal(self.make_rng("noise"), x.shape, x.dtype)


def _data_dependent_scale_and_bias(pre_activation, reduce_axes, init_scale):
    """g and b that give each unit zero mean and variance init_scale^2 on the init batch."""
    mean = jnp.mean(pre_activation, axis=reduce_axes)
    std = jnp.sqrt(jnp.var(pre_activation, axis=reduce_axes) + 1e-8)
    return init_scale / std, -mean * init_scale / std


class _WeightNorm(nn.Module):
    """Shared parameter logic of the weight-normalised dense and conv layers."""

    features: int
    data_init: bool = True
    train_scale: bool = True
    init_scale: float = 1.0
    kernel_stddev: float = 0.05
    # Added to the squared norm: the CIFAR/SVHN code's nn.weight_norm adds 1e-6, the MNIST
    # code's DenseLayer nothing.
    norm_epsilon: float = 0.0

    def normalised_kernel(self, shape):
        v = self.param("kernel", nn.initializers.normal(self.kernel_stddev), shape)
        axes = tuple(range(len(shape) - 1))
        squared_norm = jnp.sum(jnp.square(v), axis=axes, keepdims=True)
        if self.norm_epsilon:
            squared_norm = squared_norm + self.norm_epsilon
        return v / jnp.sqrt(squared_norm)

    def scale_and_bias(self, direction_output, reduce_axes):
        if self.data_init and self.is_initializing():
            init = _data_dependent_scale_and_bias(direction_output, reduce_axes, self.init_scale)
        else:
            init = (jnp.ones(self.features), jnp.zeros(self.features))
        scale = self.param("scale", lambda _: init[0])
        bias = self.param("bias", lambda _: init[1])
        if not self.train_scale:
            # The Improved-GAN MNIST discriminator keeps its hidden layers' scales at their
            # data-dependent initial values.
            scale = jax.lax.stop_gradient(scale)
        return scale, bias


class WeightNormDense(_WeightNorm):
    @nn.compact
    def __call__(self, x):
        direction = x @ self.normalised_kernel((x.shape[-1], self.features))
        scale, bias = self.scale_and_bias(direction, reduce_axes=(0,))
        return direction * scale + bias


class WeightNormConv(_WeightNorm):
    """Weight-normalised `Conv`; `transpose=True` makes it a weight-normalised `ConvTranspose`."""

    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    # "SAME", "VALID", explicit ((low, high), (low, high)); for transpose=True, None ("SAME")
    # or the dilated input's low padding.
    padding: Any = "SAME"
    transpose: bool = False
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        kernel = self.normalised_kernel((*self.kernel_size, x.shape[-1], self.features))
        if self.transpose:
            pad_low = None if self.padding == "SAME" else self.padding
            direction = conv.conv_transpose2d(x, kernel, self.strides, self.impl, pad_low)
        elif self.padding == "VALID":
            direction = jax.lax.conv_general_dilated(
                x, kernel, self.strides, "VALID", dimension_numbers=conv.DIMENSION_NUMBERS
            )
        else:
            padding = None if self.padding == "SAME" else self.padding
            direction = conv.conv2d(x, kernel, self.strides, self.impl, padding)
        scale, bias = self.scale_and_bias(direction, reduce_axes=(0, 1, 2))
        return direction * scale + bias


class BatchStatNorm(nn.Module):
    """Batch normalisation with the batch's own statistics and a learned bias (and, with
    `use_scale`, a learned scale, as PyTorch's affine BatchNorm1d has).

    The GAN generators here always normalise with batch statistics (they never run in
    inference mode), so unlike `nn.BatchNorm` there are no running averages to keep.
    """

    epsilon: float = 1e-6  # the Improved-GAN code's; PyTorch's is 1e-5
    use_scale: bool = False

    @nn.compact
    def __call__(self, x):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        normed = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            normed = normed * self.param("scale", nn.initializers.ones, (x.shape[-1],))
        return normed + self.param("bias", zeros, (x.shape[-1],))
