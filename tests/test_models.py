"""The networks: parameter counts against the Keras reference, and the architectures."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax.nets import models
from sgan_jax.nets.layers import BatchStatNorm
from sgan_jax.training import state

from .conftest import REPO, load_config

# ../shared next to the repo; else next to the data folder SGAN_MANUAL_DIR names.
KERAS_SGAN = next(
    (
        path
        for path in (
            os.path.join(REPO, "..", "shared", "baselines", "keras_sgan.py"),
            os.path.join(os.environ.get("SGAN_MANUAL_DIR", ""), "..", "baselines", "keras_sgan.py"),
        )
        if os.path.exists(path)
    ),
    os.path.join(REPO, "..", "shared", "baselines", "keras_sgan.py"),
)


def param_count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def init(config, image_shape=(28, 28, 1), num_classes=10, batch=4):
    generator, discriminator = models.create_models(config, image_shape, num_classes)
    images = jax.random.uniform(jax.random.key(1), (batch, *image_shape))
    return (
        generator,
        discriminator,
        state.create_train_state(
            config, generator, discriminator, images, {"labeled": 100, "unlabeled": 1000}
        ),
    )


def test_tutorial_parameter_counts(tutorial_config):
    _, _, s = init(tutorial_config)
    assert param_count(s.generator.params) == 1_710_771
    assert param_count(s.discriminator.params) == 316_938


def test_parameter_counts_equal_the_keras_reference_models():
    """Builds keras_sgan.py's own build_generator / build_discriminator_net (Keras 3, JAX
    backend: the functions' source is taken from the file, not retyped) and counts."""
    if not os.path.exists(KERAS_SGAN):
        pytest.fail(f"{KERAS_SGAN} not found")
    script = textwrap.dedent(
        f"""
        import ast, os
        os.environ["KERAS_BACKEND"] = "jax"
        from keras import layers
        from keras.models import Sequential
        tree = ast.parse(open({KERAS_SGAN!r}).read())
        wanted = ("build_generator", "build_discriminator_net")
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
        assert len(defs) == 2, [n.name for n in defs]
        ns = {{name: getattr(layers, name) for name in dir(layers)}}
        ns.update(Sequential=Sequential, num_classes=10)
        exec(compile(ast.Module(body=defs, type_ignores=[]), "keras_sgan.py", "exec"), ns)
        g = ns["build_generator"](100); g.build((None, 100))
        d = ns["build_discriminator_net"]((28, 28, 1)); d.build((None, 28, 28, 1))
        print(g.count_params(), d.count_params())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    keras_g, keras_d = map(int, out.stdout.split()[-2:])
    assert (keras_g, keras_d) == (1_710_771, 316_938)


def test_tutorial_shapes_and_ranges(tutorial_config):
    generator, discriminator, s = init(tutorial_config)
    z = models.sample_latent(jax.random.key(0), 8, 100, "normal")
    images = generator.apply({"params": s.generator.params}, z)
    assert images.shape == (8, 28, 28, 1)
    assert float(images.min()) >= -1 and float(images.max()) <= 1
    logits, features = discriminator.apply(
        {"params": s.discriminator.params}, images, train=False, return_features=True
    )
    assert logits.shape == (8, 10) and features.shape == (8, 4 * 4 * 128)


def test_dropout_is_active_only_in_training(tutorial_config):
    _, discriminator, s = init(tutorial_config)
    x = jax.random.uniform(jax.random.key(2), (4, 28, 28, 1))
    params = {"params": s.discriminator.params}
    a = discriminator.apply(params, x, train=False)
    b = discriminator.apply(params, x, train=False)
    c = discriminator.apply(params, x, train=True, rngs=state.model_rngs(jax.random.key(3)))
    assert jnp.array_equal(a, b)
    assert not jnp.allclose(a, c)


def test_improved_mlp_architecture(improved_config):
    generator, discriminator, s = init(improved_config, batch=16)
    kernels = [s.discriminator.params[f"WeightNormDense_{i}"]["kernel"].shape for i in range(6)]
    assert kernels == [(784, 1000), (1000, 500), (500, 250), (250, 250), (250, 250), (250, 10)]
    z = models.sample_latent(jax.random.key(0), 16, 100, "uniform")
    assert float(z.min()) >= 0 and float(z.max()) < 1
    images = generator.apply({"params": s.generator.params}, z)
    assert images.shape == (16, 28, 28, 1)
    assert float(images.min()) >= 0 and float(images.max()) <= 1  # sigmoid output


def test_weight_norm_data_dependent_init(improved_config):
    """After init on a batch, every first-layer unit has mean 0 and std 1 on that batch."""
    generator, discriminator = models.create_models(improved_config, (28, 28, 1), 10)
    images = jax.random.uniform(jax.random.key(1), (256, 28, 28, 1))
    params = discriminator.init({"params": jax.random.key(0)}, images, train=False)["params"]
    layer = params["WeightNormDense_0"]
    v = layer["kernel"]
    w = v / jnp.linalg.norm(v, axis=0, keepdims=True) * layer["scale"]
    pre = images.reshape(256, -1) @ w + layer["bias"]
    assert jnp.allclose(pre.mean(0), 0, atol=1e-4)
    assert jnp.allclose(pre.std(0), 1, atol=1e-3)


def test_generator_output_data_dependent_init(improved_config):
    """generator_data_init: each pixel's pre-sigmoid value has mean 0 and std 1 on the init
    batch (BatchStatNorm uses the batch's statistics, so applying to that batch reproduces it)."""
    with improved_config.unlocked():
        improved_config.generator_data_init = True
    generator, _ = models.create_models(improved_config, (28, 28, 1), 10)
    z = models.sample_latent(jax.random.key(3), 500, 100, "uniform")
    params = generator.init({"params": jax.random.key(0)}, z)
    logits = jax.scipy.special.logit(generator.apply(params, z).reshape(500, -1))
    assert jnp.allclose(logits.mean(0), 0, atol=1e-3)
    assert jnp.allclose(logits.std(0), 1, atol=1e-2)
    with improved_config.unlocked():
        improved_config.generator_data_init = False
    generator, _ = models.create_models(improved_config, (28, 28, 1), 10)
    logits = jax.scipy.special.logit(
        generator.apply(generator.init({"params": jax.random.key(0)}, z), z)
    )
    assert not jnp.allclose(logits.reshape(500, -1).std(0), 1, atol=1e-2)


def test_gaussian_noise_only_in_training(improved_config):
    _, discriminator, s = init(improved_config, batch=8)
    x = jax.random.uniform(jax.random.key(2), (4, 28, 28, 1))
    params = {"params": s.discriminator.params}
    clean = discriminator.apply(params, x, train=False)
    assert jnp.array_equal(clean, discriminator.apply(params, x, train=False))
    noisy = discriminator.apply(params, x, train=True, rngs=state.model_rngs(jax.random.key(5)))
    assert not jnp.allclose(clean, noisy)


@pytest.mark.parametrize("model", ["tutorial", "improved"])
def test_32x32x3_models(model, tutorial_config, improved_config):
    config = tutorial_config if model == "tutorial" else improved_config
    with config.unlocked():
        config.image_range = "symmetric"
    generator, discriminator, s = init(config, image_shape=(32, 32, 3), batch=8)
    z = models.sample_latent(jax.random.key(0), 4, 100, config.z_distribution)
    images = jax.jit(generator.apply)({"params": s.generator.params}, z)
    assert images.shape == (4, 32, 32, 3)
    apply = jax.jit(discriminator.apply, static_argnames="train")
    logits = apply({"params": s.discriminator.params}, images, train=False)
    assert logits.shape == (4, 10)


def test_unsupported_image_shape_is_an_error(tutorial_config):
    with pytest.raises(ValueError, match="not one of"):
        models.create_models(tutorial_config, (64, 64, 3), 10)


def test_bad_gan_generator_batch_norm_is_pytorchs(improved_config):
    """generator_bn_scale / _epsilon: each hidden batch norm is PyTorch's affine BatchNorm1d in
    training mode, (x - mean) / sqrt(var + eps) * scale + bias, written out in numpy here;
    without them the Improved-GAN layer (a bias only, eps 1e-6) is unchanged."""
    bad_gan = load_config("bad_gan_mnist")
    generator, _ = models.create_models(bad_gan, (28, 28, 1), 10)
    z = models.sample_latent(jax.random.key(3), 64, 100, "uniform")
    params = generator.init({"params": jax.random.key(0)}, z)["params"]
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(4), x.shape), params)
    norm = params["BatchStatNorm_0"]
    pre = np.asarray(z) @ np.asarray(params["Dense_0"]["kernel"])
    expected = (pre - pre.mean(0)) / np.sqrt(pre.var(0) + 1e-5) * norm["scale"] + norm["bias"]
    _, inter = generator.apply(
        {"params": params}, z, capture_intermediates=lambda m, _: isinstance(m, BatchStatNorm)
    )
    got = inter["intermediates"]["BatchStatNorm_0"]["__call__"][0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    improved, _ = models.create_models(improved_config, (28, 28, 1), 10)
    assert set(improved.init({"params": jax.random.key(0)}, z)["params"]["BatchStatNorm_0"]) == {
        "bias"
    }
