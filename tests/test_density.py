"""The density model Bad GAN's low-density term will read: a proper distribution, enumerated on
tiny images, autoregressive in raster order, and differentiable in the image."""

import itertools
import json
import os
import re
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from sgan_jax.nets import density
from sgan_jax.training import density as density_training

from .conftest import REPO, cli_env, run_script, script_command


def _tiny_models(levels: int, num_pixels: int, scales: int = 2):
    return [
        density.MADE(num_pixels=num_pixels, hidden_sizes=(16, 16), mixtures=3, levels=levels),
        density.PixelCNN(filters=8, resnets=1, scales=scales, mixtures=3, levels=levels),
    ]


@pytest.mark.parametrize("levels", [2, 4])
@pytest.mark.parametrize("which", [0, 1], ids=["made", "pixelcnn"])
def test_log_likelihood_sums_to_one_over_every_tiny_image(levels, which):
    """All levels^4 images of 2x2 pixels, at init and at random parameters: sum p(x) = 1.
    (The PixelCNN's second scale is checked by the autoregressive test: one scale keeps it
    quick to compile.)"""
    model = _tiny_models(levels, 4, scales=1)[which]
    values = np.linspace(-1.0, 1.0, levels)
    images = jnp.asarray(list(itertools.product(values, repeat=4)), jnp.float32)
    params = model.init(jax.random.key(0), images)
    shaken = jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(1), x.shape), params)
    for p in (params, shaken):
        total = float(jnp.exp(jax.scipy.special.logsumexp(model.apply(p, images))))
        assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("which", [0, 1], ids=["made", "pixelcnn"])
def test_samples_follow_the_likelihood(which):
    """20,000 draws of 2x2 images with 4 levels: each of the 256 images turns up as often as
    its probability says (within 5 standard errors of a frequency)."""
    levels, num = 4, 20_000
    model = _tiny_models(levels, 4, scales=1)[which]
    values = np.linspace(-1.0, 1.0, levels)
    images = jnp.asarray(list(itertools.product(values, repeat=4)), jnp.float32)
    params = model.init(jax.random.key(0), images)
    params = jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(1), x.shape), params)
    expected = np.exp(np.asarray(model.apply(params, images), np.float64))
    drawn = np.asarray(
        jax.jit(density.sample, static_argnums=(0, 3, 4))(model, params, jax.random.key(2), num, 4)
    )
    assert np.all(np.min(np.abs(drawn[..., None] - values), axis=-1) < 1e-6)  # on the levels
    index = np.round((drawn + 1) / 2 * (levels - 1)).astype(int) @ levels ** np.arange(3, -1, -1)
    frequency = np.bincount(index, minlength=levels**4) / num
    error = np.sqrt(expected * (1 - expected) / num)
    assert np.all(np.abs(frequency - expected) <= 5 * error + 1e-4), np.max(
        np.abs(frequency - expected)
    )
    assert expected.max() > 2 / levels**4  # a skewed distribution, not a uniform one


@pytest.mark.parametrize("which", [0, 1], ids=["made", "pixelcnn"])
def test_pixel_d_depends_on_the_pixels_before_it_only(which):
    """The Jacobian of each pixel's log-probability in the image is zero on and after the
    pixel's own position, but for the pixel itself (its own value is what is scored); the
    PixelCNN's 6x6 images go down to 3x3 and back up."""
    model = _tiny_models(256, 36)[which]
    x = jax.random.uniform(jax.random.key(2), (1, 36), minval=-1, maxval=1)
    params = model.init(jax.random.key(3), x)

    def per_pixel(image):
        return density.pixel_log_probs(model, params, image[None])[0]

    jacobian = np.asarray(jax.jacobian(per_pixel)(x[0]))
    for d in range(36):
        assert np.all(jacobian[d, d + 1 :] == 0), d
    assert np.all(np.diag(jacobian) != 0)
    # MADE's random degrees may cut some inputs off; the PixelCNN has no blind spot.
    seen = jacobian[35, :35] != 0
    assert np.all(seen) if which == 1 else np.any(seen)


@pytest.mark.parametrize(
    "model",
    [
        density.MADE(num_pixels=784, hidden_sizes=(7, 9), mixtures=3),
        density.PixelCNN(filters=5, resnets=1, scales=1, mixtures=2),
        density.PixelCNN(filters=8, resnets=2, scales=3, mixtures=4),
    ],
    ids=["made", "pixelcnn_1_scale", "pixelcnn_3_scales"],
)
def test_the_network_is_read_back_from_its_parameters(model):
    """A density file carries only parameters: the model they belong to is rebuilt from them."""
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    assert density.model_from_params(params) == model


def test_independent_baseline_is_a_smoothed_histogram_per_pixel():
    """Two training images of one pixel, both 0: p(0) = (1 + 2) / (256 + 2), in bits."""
    train = np.zeros((2, 1), np.uint8)
    assert density_training.independent_bits_per_dim(train, np.zeros((1, 1), np.uint8)) == (
        pytest.approx(-np.log2(3 / 258))
    )
    assert density_training.independent_bits_per_dim(train, np.full((1, 1), 7, np.uint8)) == (
        pytest.approx(-np.log2(1 / 258))
    )


def test_density_training_trains_a_pixelcnn_that_bad_gan_can_read(mnist, tmp_path):
    """model=pixelcnn through the same command: density.json records its shape, and the
    parameters rebuild that network."""
    run_script(
        "train_density.py",
        f"--workdir={tmp_path}",
        "--config.num_steps=10",
        "--config.log_every=5",
        "--config.model=pixelcnn",
        "--config.filters=4",
        "--config.resnets=1",
        "--config.scales=1",
        "--config.batch_size=8",
        "--config.num_held_out=500",
        "--config.test_examples=100",
    )
    info = json.loads((tmp_path / "density.json").read_text())
    shape = (info["model"], info["filters"], info["resnets"], info["scales"])
    assert shape == ("pixelcnn", 4, 1, 1)
    params = density.read_params(str(tmp_path / "density.msgpack"))
    assert density.model_from_params(params) == density.PixelCNN(
        filters=4, resnets=1, scales=1, mixtures=5
    )
    assert 0 < json.loads((tmp_path / "results.json").read_text())["test_bits_per_dim"] < 8
    _assert_figures(tmp_path)


def _assert_figures(folder):
    """The drawn samples are a picture, not a blank; the curve is there."""
    grid = np.asarray(Image.open(folder / "samples" / "samples.png"))
    assert grid.shape[0] > 100 and grid.std() > 0
    assert os.listdir(folder / "plots") == ["train_bits_per_dim.png"]


def test_cost_of_a_candidate_is_measured_on_the_real_steps(tmp_path):
    """density_cost times train_density.py's update and the Bad GAN step with the LD term off
    and on, reading a density file of the candidate's shape that it writes."""
    from sgan_jax.training import density_cost

    from .conftest import load_config

    density_config = density_cost.with_overrides(
        load_config("density_mnist"), dict(hidden_sizes=(8,), batch_size=10, num_held_out=50)
    )
    gan_config = density_cost.with_overrides(
        load_config("bad_gan_mnist"), dict(batch_size=10, init_batch_size=10)
    )
    row = density_cost.measure(density_config, gan_config, str(tmp_path), 1, 2)
    assert row["params"] == 784 * 8 + 8 + 8 * 784 * 15 + 784 * 15
    assert row["gan_step_ms"] == pytest.approx(
        row["gan_step_ms_without_ld"] + 0.1 * row["ld_application_ms"]
    )
    assert row["density_update_seconds"] > 0 and row["gan_step_ms_without_ld"] > 0
    assert density.model_from_params(density.read_params(str(tmp_path / "density.msgpack"))) == (
        density_training.create_model(density_config)
    )


def test_cost_command_refuses_an_unknown_candidate():
    result = run_script("density_cost.py", "--candidates=made_1024,pixelcnn_9", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: candidates:")


def test_a_stopped_density_run_resumes_to_the_bytes_and_rows_of_one_never_stopped(mnist, tmp_path):
    """SIGTERM between two metrics rows: exit 75 after a checkpoint at that step; the same
    command then ends with the parameters and the rows of the run that was never stopped."""
    args = (
        "--config.num_steps=2000",
        "--config.log_every=7",
        "--config.checkpoint_every=1000",
        "--config.hidden_sizes=(16,)",
        "--config.batch_size=10",
        "--config.num_held_out=500",
        "--config.test_examples=200",
    )
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    run_script("train_density.py", f"--workdir={whole}", *args)
    results = json.loads((whole / "results.json").read_text())
    assert results["final_step"] == 2000 and results["num_held_out"] == 500
    for key in ("test_bits_per_dim", "held_out_bits_per_dim", "independent_test_bits_per_dim"):
        assert 0 < results[key] < 8, key
    info = json.loads((whole / "density.json").read_text())
    assert info["dataset"] == "mnist" and info["levels"] == 256 and info["image_range"]
    held_out = np.load(whole / "held_out.npy")
    _assert_figures(whole)
    assert len(held_out) == len(set(held_out.tolist())) == 500
    process = subprocess.Popen(
        script_command("train_density.py", f"--workdir={stopped}", *args),
        env=cli_env(),
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    rows_file, deadline = stopped / "metrics.jsonl", time.time() + 600
    while not (rows_file.exists() and len(rows_file.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=600)[1]
    assert process.returncode == 75, stderr[-2000:]
    step = int(re.search(r"checkpoint saved at step (\d+)", stderr).group(1))
    assert 14 <= step < 2000 and str(step) in os.listdir(stopped / "checkpoints")
    run_script("train_density.py", f"--workdir={stopped}", *args)
    assert (stopped / "density.msgpack").read_bytes() == (whole / "density.msgpack").read_bytes()
    assert (stopped / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    # The wall time counts both processes' (from the checkpoint's metadata), the last one's apart.
    resumed = json.loads((stopped / "results.json").read_text())
    assert resumed["wall_seconds"] > resumed["process_wall_seconds"] > 0
    assert results["wall_seconds"] <= results["process_wall_seconds"]
    assert resumed["git_commit"] and resumed["host"] and resumed["device"]
