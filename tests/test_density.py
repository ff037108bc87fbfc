"""The density model Bad GAN's low-density term will read: a proper distribution, enumerated on
tiny images, autoregressive in raster order, and differentiable in the image."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax.nets import density


@pytest.mark.parametrize("levels", [2, 4])
def test_log_likelihood_sums_to_one_over_every_tiny_image(levels):
    """All levels^4 images of 2x2 pixels, at init and at random parameters: sum p(x) = 1."""
    model = density.MADE(num_pixels=4, hidden_sizes=(16, 16), mixtures=3, levels=levels)
    values = np.linspace(-1.0, 1.0, levels)
    images = jnp.asarray(list(itertools.product(values, repeat=4)), jnp.float32)
    params = model.init(jax.random.key(0), images)
    shaken = jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(1), x.shape), params)
    for p in (params, shaken):
        total = float(jnp.exp(jax.scipy.special.logsumexp(model.apply(p, images))))
        assert total == pytest.approx(1.0, abs=1e-5)


def test_pixel_d_depends_on_the_pixels_before_it_only():
    """The Jacobian of each pixel's log-probability in the image is zero on and after the
    pixel's own position, but for the pixel itself (its own value is what is scored)."""
    model = density.MADE(num_pixels=6, hidden_sizes=(32, 32), mixtures=2, levels=256)
    x = jax.random.uniform(jax.random.key(2), (1, 6), minval=-1, maxval=1)
    params = model.init(jax.random.key(3), x)

    def per_pixel(image):
        return density.pixel_log_probs(model, params, image[None])[0]

    jacobian = np.asarray(jax.jacobian(per_pixel)(x[0]))
    for d in range(6):
        assert np.all(jacobian[d, d + 1 :] == 0), d
    assert np.any(jacobian[5, :5] != 0) and np.all(np.diag(jacobian) != 0)
