"""The fast CPU convolutions equal flax's reference layers, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax.nets import conv, layers, models

# (input shape, features, kernel, strides): the tutorial's layers, then the Improved-GAN
# CIFAR generator's 5x5 stride-2 ones and odd cases.
TRANSPOSE_CASES = [
    ((4, 7, 7, 256), 128, 3, 2),
    ((4, 14, 14, 128), 128, 3, 2),
    ((4, 28, 28, 128), 1, 3, 1),
    ((4, 4, 4, 32), 16, 5, 2),
    ((4, 8, 8, 16), 3, 5, 2),
    ((2, 5, 6, 3), 4, 4, 2),
    ((2, 5, 5, 3), 4, 3, 3),
]
CONV_CASES = [
    ((4, 28, 28, 1), 128, 3, 2),
    ((4, 14, 14, 128), 128, 3, 2),
    ((4, 7, 7, 128), 128, 3, 2),
    ((4, 28, 28, 1), 1, 7, 1),
    ((4, 28, 28, 128), 1, 3, 1),
    ((2, 32, 32, 3), 96, 3, 1),
]


def _compare(ours, reference, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    params = reference.init(jax.random.key(1), x)
    # Non-zero biases, so a mix-up of bias and kernel would show.
    params = jax.tree.map(lambda p: p + 0.1 * jnp.ones_like(p), params)
    np.testing.assert_allclose(
        jax.jit(ours.apply)(params, x), jax.jit(reference.apply)(params, x), rtol=1e-5, atol=1e-5
    )

    def loss(module):
        return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    # Jitted: one compiled program each, where op-by-op dispatch compiled every operation.
    ours_grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
    reference_grads = jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(reference_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,features,kernel,stride", TRANSPOSE_CASES)
def test_conv_transpose_equals_flax(shape, features, kernel, stride):
    k, s = (kernel, kernel), (stride, stride)
    ours = layers.ConvTranspose(features, k, s, impl="matmul")
    reference = nn.ConvTranspose(features, k, s, padding="SAME")
    _compare(ours, reference, shape)


@pytest.mark.parametrize("shape,features,kernel,stride", CONV_CASES)
def test_conv_equals_flax(shape, features, kernel, stride):
    k, s = (kernel, kernel), (stride, stride)
    _compare(layers.Conv(features, k, s, impl="matmul"), nn.Conv(features, k, s, "SAME"), shape)


def test_transpose_uses_no_zero_taps():
    """The 14->28 layer's phases together multiply exactly the 9 kernel taps (no padding taps)."""
    taps = [
        len(conv._phase_taps(3, 2, ph, conv._transpose_pad_low(3, 2))[0])
        * len(conv._phase_taps(3, 2, pw, conv._transpose_pad_low(3, 2))[0])
        for ph in range(2)
        for pw in range(2)
    ]
    assert sorted(taps) == [1, 2, 2, 4] and sum(taps) == 9


def test_fast_tutorial_models_equal_lax_models(tutorial_config):
    """The whole generator and discriminator: impl='matmul' equals impl='xla'."""
    with tutorial_config.unlocked():
        tutorial_config.conv_impl = "matmul"
    fast_g, fast_d = models.create_models(tutorial_config, (28, 28, 1), 10)
    with tutorial_config.unlocked():
        tutorial_config.conv_impl = "xla"
    lax_g, lax_d = models.create_models(tutorial_config, (28, 28, 1), 10)
    z = jax.random.normal(jax.random.key(0), (8, 100))
    g_params = jax.jit(fast_g.init)(jax.random.key(1), z)
    images = jax.jit(fast_g.apply)(g_params, z)
    np.testing.assert_allclose(images, jax.jit(lax_g.apply)(g_params, z), rtol=1e-5, atol=1e-5)
    d_params = jax.jit(fast_d.init, static_argnames="train")(jax.random.key(2), images, train=False)
    np.testing.assert_allclose(
        jax.jit(fast_d.apply, static_argnames="train")(d_params, images, train=False),
        jax.jit(lax_d.apply, static_argnames="train")(d_params, images, train=False),
        rtol=1e-5,
        atol=1e-5,
    )


def test_auto_picks_matmul_on_cpu():
    assert jax.default_backend() == "cpu"
    assert conv.resolve_impl("auto") == "matmul"
    with pytest.raises(ValueError):
        conv.resolve_impl("cudnn")


@pytest.mark.parametrize("impl", ["matmul", "xla"])
def test_theano_aligned_padding_is_the_exact_transpose_of_a_pad_2_convolution(impl):
    """The Improved-GAN CIFAR-10 generator's deconvolutions are Theano's gradient of a stride-2
    5x5 convolution with pad=2 on both sides: pad_low=2 computes it (with the kernel flipped and
    its channels swapped, a reparameterisation); lax's "SAME" is shifted by a pixel. And a
    stride-2 convolution with explicit (1, 1) padding is Theano's pad=1."""
    kernel = jax.random.normal(jax.random.key(1), (5, 5, 3, 6))  # 8x8x3 -> 4x4x6, pad 2

    def forward(images):
        return jax.lax.conv_general_dilated(
            images, kernel, (2, 2), [(2, 2), (2, 2)], dimension_numbers=conv.DIMENSION_NUMBERS
        )

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 6))
    _, transpose = jax.vjp(forward, jnp.zeros((2, 8, 8, 3)))
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    ours = conv.conv_transpose2d(x, flipped, (2, 2), impl, pad_low=2)
    np.testing.assert_allclose(ours, transpose(x)[0], atol=1e-4)
    same = conv.conv_transpose2d(x, flipped, (2, 2), impl)
    assert not np.allclose(same, transpose(x)[0], atol=1e-2)
    images = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    small = jax.random.normal(jax.random.key(3), (3, 3, 3, 8))
    padded = conv.conv2d(images, small, (2, 2), impl, ((1, 1), (1, 1)))
    reference = jax.lax.conv_general_dilated(
        images, small, (2, 2), [(1, 1), (1, 1)], dimension_numbers=conv.DIMENSION_NUMBERS
    )
    assert padded.shape == (2, 16, 16, 8)
    np.testing.assert_allclose(padded, reference, atol=1e-4)
