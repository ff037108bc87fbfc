"""Bad GAN (methods/bad_gan.py): the low-density term at hand-computed cases, its threshold from
held-out training images only, the density file refused when missing or made for other data,
and a run through the real CLI with the term switched on from the first step."""

import dataclasses
import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax.data import input_pipeline
from sgan_jax.methods import bad_gan
from sgan_jax.nets import density, models
from sgan_jax.runs.errors import ConfigError
from sgan_jax.training import programs, steps
from sgan_jax.training.state import create_train_state

from .conftest import load_config, read_results, read_rows, run_train, tiny


def test_low_density_term_at_hand_computed_cases():
    """All below tau: 0. Two of four above it, by 2 and 4: weight * (2 + 4) / 2."""
    below = jnp.asarray([-5.0, -3.0, -1.0])
    assert float(bad_gan.low_density_loss(below, 0.0, 1e-4)) == 0.0
    mixed = jnp.asarray([-1.0, 2.0, 4.0, 0.0])  # 0.0 is at tau, not above: no count
    assert float(bad_gan.low_density_loss(mixed, 0.0, 1e-4)) == pytest.approx(1e-4 * 3.0)
    assert float(bad_gan.low_density_loss(mixed, 1.0, 1.0)) == pytest.approx((1 + 3) / 2)


def _write_density(folder, dataset="mnist", image_range="symmetric", held_out=None):
    """A density workdir as train_density.py writes it, with a small untrained MADE."""
    folder.mkdir(parents=True, exist_ok=True)
    model = density.MADE(num_pixels=784, hidden_sizes=(16,), mixtures=2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))
    params_file, info_file, held_out_file = density.density_files(str(folder))
    with open(params_file, "wb") as f:
        f.write(flax.serialization.to_bytes(params))
    info = dict(dataset=dataset, image_range=image_range, levels=256, model="made")
    with open(info_file, "w") as f:
        json.dump(info, f)
    np.save(held_out_file, np.arange(200) if held_out is None else held_out)
    return model, params


def test_tau_comes_from_the_held_out_training_images_never_from_test(mnist, tmp_path):
    """tau is the 10th percentile (np.partition at int(N/10)) of log p over the held-out
    training images; replacing the test split changes nothing."""
    model, params = _write_density(tmp_path / "density", held_out=np.arange(100, 300))
    config = load_config("bad_gan_mnist")
    with config.unlocked():
        config.density_path = str(tmp_path / "density")
    data = bad_gan.METHOD.method_data(config, mnist, None)
    pixels = mnist.train_images[100:300].reshape(200, 784).astype(np.float32) / 127.5 - 1
    log_probs = np.asarray(model.apply(params, pixels))
    assert float(data["tau"]) == pytest.approx(float(np.partition(log_probs, 20)[20]), rel=1e-5)
    other_test = dataclasses.replace(mnist, test_images=255 - mnist.test_images)
    assert float(bad_gan.METHOD.method_data(config, other_test, None)["tau"]) == float(data["tau"])


@pytest.mark.parametrize(
    "what,expected",
    [
        ("missing", "no density model at"),
        ("dataset", "models 'fashion_mnist', not this run's 'mnist'"),
        ("range", "models pixels of range 'unit'"),
    ],
)
def test_a_missing_or_mismatched_density_is_refused(mnist, tmp_path, what, expected):
    folder = tmp_path / "density"
    if what == "dataset":
        _write_density(folder, dataset="fashion_mnist")
    elif what == "range":
        _write_density(folder, image_range="unit")
    config = load_config("bad_gan_mnist")
    with config.unlocked():
        config.density_path = str(folder)
    with pytest.raises(ConfigError, match=expected) as raised:
        bad_gan.METHOD.method_data(config, mnist, None)
    assert str(raised.value).startswith("density_path: ")


def test_a_run_with_the_term_on_from_the_start(mnist, tmp_path):
    """Through the CLI: the term is applied at every step after the first (ld_start=0,
    probability 1) and logged; a missing density is one line and exit 2, nothing written."""
    _write_density(tmp_path / "density")
    common = ("--config.num_iterations=10", "--config.supervised_epochs=0")
    trained = run_train(
        tmp_path / "run",
        *common,
        f"--config.density_path={tmp_path / 'density'}",
        "--config.ld_start=0",
        "--config.ld_probability=1",
        config_file="bad_gan_mnist.py",
    )
    logged = [r for r in read_rows(tmp_path / "run") if "g_loss" in r]
    assert len(logged) == 2 and all(r["g_loss_low_density"] >= 0 for r in logged)
    assert np.isfinite(logged[-1]["g_loss"])
    # results.json records the threshold the run used: tau of the held-out training images.
    config = load_config("bad_gan_mnist")
    with config.unlocked():
        config.density_path = str(tmp_path / "density")
    tau = float(bad_gan.METHOD.method_data(config, mnist, None)["tau"])
    results = read_results(tmp_path / "run")
    assert results["method_data"] == {"ld_threshold": pytest.approx(tau)}
    assert results["method"] == "bad_gan"
    assert f"bad_gan, best validation (step {results['best_validation_step']})" in trained.stdout
    refused = run_train(
        tmp_path / "refused",
        *common,
        f"--config.density_path={tmp_path / 'nowhere'}",
        config_file="bad_gan_mnist.py",
        check=False,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: density_path: no density")
    assert not (tmp_path / "refused").exists()


def test_seeds_trained_together_run_the_density_model_only_when_a_coin_says_so(mnist, tmp_path):
    """Two seeds vmapped, as a sweep trains them. The term's lax.cond stays a branch: with a
    per-seed coin as its predicate, vmap made it a select that ran the density model at every
    iteration (a sweep's Bad GAN at 5 it/s instead of 14). And each seed's term is the one it
    gets trained alone, whichever way the other seed's coin falls."""
    _, density_params = _write_density(tmp_path / "density")
    config = tiny(load_config("bad_gan_mnist"), ld_start=0, ld_probability=0.5)
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    images = input_pipeline.scale_images(mnist.train_images[:500], config.image_range)
    states = []
    for seed in (0, 1):
        with config.unlocked():
            config.seed = seed
        states.append(
            create_train_state(config, generator, discriminator, images, split.pool_sizes)
        )
    # tau far below every log p: the term is positive exactly where a seed's coin is on.
    method_data = {"density": density_params, "tau": np.float32(-1e9)}
    data = dict(jax.device_put(input_pipeline.device_data(mnist, split)), method=method_data)
    seeds_data = dict(
        data, **{k: jnp.stack([data[k]] * 2) for k in ("labeled_idx", "unlabeled_idx")}
    )
    one_seed = steps.make_train_step(config, generator, discriminator)
    seeds = steps.make_seeds_train_step(config, generator, discriminator)
    stacked = programs.stack(states)
    step = jnp.asarray(1, jnp.int32)

    def count_conds(jaxpr):
        return str(jaxpr).count(" cond[")

    alone_conds = count_conds(jax.make_jaxpr(one_seed)(states[0], data, step))
    assert alone_conds >= 1  # the samplers' and the term's
    assert count_conds(jax.make_jaxpr(seeds)(stacked, seeds_data, step)) == alone_conds

    index = bad_gan.METHOD.metric_names.index("g_loss_low_density")
    one_seed, seeds = jax.jit(one_seed), jax.jit(seeds)
    coins = []
    for step in range(1, 9):
        together = np.asarray(seeds(stacked, seeds_data, step).metric_sums[:, index])
        alone = [float(one_seed(s, data, step).metric_sums[index]) for s in states]
        np.testing.assert_allclose(together, alone, rtol=1e-4)
        coins.append(tuple(together > 0))
    assert {(True, False), (False, True)} & set(coins)  # the two coins differed
    assert (True, True) in coins or (False, False) in coins


def _generator_setup(mnist, tmp_path, **overrides):
    """What a Bad GAN generator update sees: (config, nets, generator and discriminator params,
    feature matching's batch, the context), with tau far below every log p."""
    _, density_params = _write_density(tmp_path / "density")
    config = tiny(load_config("bad_gan_mnist"), ld_start=0, **overrides)
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    images = input_pipeline.scale_images(mnist.train_images[:500], config.image_range)
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    nets = steps.Nets(config, generator, discriminator, lambda x: x)
    extra = {"unlabeled_g": images[: config.batch_size]}
    method_data = {"density": density_params, "tau": np.float32(-1e9)}
    context = bad_gan.base.StepContext(jnp.asarray(1, jnp.int32), method_data)
    params = (state.generator.params, state.discriminator.params)
    return config, nets, params, extra, context


def test_the_generator_gets_the_density_gradient_the_term_defines(mnist, tmp_path):
    """With the term on (probability 1), the generator's gradient is feature matching's plus
    the gradient of the LD term taken directly, without the branch; with it off, feature
    matching's alone. The loss logged is the same sum."""
    config, nets, (g_params, d_params), extra, context = _generator_setup(
        mnist, tmp_path, ld_probability=1.0
    )
    z_key, key = jax.random.key(3), jax.random.key(4)
    ld_z_key = jax.random.split(jax.random.fold_in(key, 7))[1]
    args = (d_params, extra, z_key, key, context)

    def method_loss(g):
        return bad_gan.METHOD.generator_loss(config, nets, g, *args)[0]

    def direct_loss(g):
        matching = bad_gan.improved_gan.METHOD.generator_loss(config, nets, g, *args)[0]
        term = bad_gan.BadGAN._low_density(config, nets, context.method_data, ld_z_key, g)
        return matching + term

    term = bad_gan.BadGAN._low_density(config, nets, context.method_data, ld_z_key, g_params)
    assert float(term) > 0  # tau far below: the term is on and moves the generator
    np.testing.assert_allclose(method_loss(g_params), direct_loss(g_params), rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9),
        jax.grad(method_loss)(g_params),
        jax.grad(direct_loss)(g_params),
    )
    with config.unlocked():
        config.ld_probability = 0.0
    matching = bad_gan.improved_gan.METHOD.generator_loss
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.grad(method_loss)(g_params),
        jax.grad(lambda g: matching(config, nets, g, *args)[0])(g_params),
    )


def test_a_skipped_term_carries_nothing_of_the_density_model(mnist, tmp_path):
    """The term's branch returns its value and a gradient shaped like the generator, nothing
    more. Differentiated through, the cond returned the density's masked weights and
    activations for the backward pass, and zero-filled them in every iteration that skipped
    the term: Bad GAN trained at 7.4 it/s instead of 9.9 (docs/BENCHMARKS.md)."""
    config, nets, (g_params, d_params), extra, context = _generator_setup(mnist, tmp_path)
    keys = (jax.random.key(3), jax.random.key(4))

    def grads(g):
        loss = bad_gan.METHOD.generator_loss
        return jax.grad(lambda p: loss(config, nets, p, d_params, extra, *keys, context)[0])(g)

    jaxpr = jax.make_jaxpr(grads)(g_params)
    conds = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "cond"]
    generator_shapes = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(g_params))
    assert len(conds) == 1
    out_shapes = sorted(tuple(var.aval.shape) for var in conds[0].outvars)
    assert out_shapes == sorted([(), *generator_shapes])
