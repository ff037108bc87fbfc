"""The density model Bad GAN's low-density term will read: a proper distribution, enumerated on
tiny images, autoregressive in raster order, and differentiable in the image."""

import itertools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax.nets import density
from sgan_jax.training import density as density_training

from .conftest import run_script


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


def test_independent_baseline_is_a_smoothed_histogram_per_pixel():
    """Two training images of one pixel, both 0: p(0) = (1 + 2) / (256 + 2), in bits."""
    train = np.zeros((2, 1), np.uint8)
    assert density_training.independent_bits_per_dim(train, np.zeros((1, 1), np.uint8)) == (
        pytest.approx(-np.log2(3 / 258))
    )
    assert density_training.independent_bits_per_dim(train, np.full((1, 1), 7, np.uint8)) == (
        pytest.approx(-np.log2(1 / 258))
    )


TINY_DENSITY = (
    "--config.num_steps=20",
    "--config.log_every=5",
    "--config.checkpoint_every=10",
    "--config.hidden_sizes=(32, 32)",
    "--config.num_held_out=500",
    "--config.test_examples=500",
)


def test_density_training_writes_its_file_and_resumes_exactly(mnist, tmp_path):
    """The command trains on MNIST but the held-out images, reports test bits/dim beside the
    independent baseline, writes the parameters with what they model; killed after its
    step-10 checkpoint, the same command ends with the same parameters, byte for byte."""
    whole = tmp_path / "whole"
    run_script("train_density.py", f"--workdir={whole}", *TINY_DENSITY)
    results = json.loads((whole / "results.json").read_text())
    assert results["final_step"] == 20 and results["num_held_out"] == 500
    for key in ("test_bits_per_dim", "held_out_bits_per_dim", "independent_test_bits_per_dim"):
        assert 0 < results[key] < 8, key
    info = json.loads((whole / "density.json").read_text())
    assert info["dataset"] == "mnist" and info["levels"] == 256 and info["image_range"]
    held_out = np.load(whole / "held_out.npy")
    assert len(held_out) == len(set(held_out.tolist())) == 500
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    shutil.rmtree(resumed / "checkpoints" / "20")
    for name in ("results.json", "density.msgpack"):
        (resumed / name).unlink()
    run_script("train_density.py", f"--workdir={resumed}", *TINY_DENSITY)
    assert (resumed / "density.msgpack").read_bytes() == (whole / "density.msgpack").read_bytes()
    rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
