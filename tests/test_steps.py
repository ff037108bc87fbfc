"""The jitted SGAN and baseline steps on real MNIST: one compilation, sampling, metrics, the NaN
tracker."""

import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.training import state as state_lib
from sgan_jax.training import steps, supervised
from sgan_jax.training.state import create_train_state

from .conftest import load_config

METRIC_NAMES = methods.get("sgan").metric_names


def make(config, mnist, split=None):
    split = split or input_pipeline.select_labels(
        mnist.train_labels, config.num_labeled, config.label_selection, 10, config.data_seed
    )
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    images = input_pipeline.scale_images(mnist.train_images[:32], config.image_range)
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    return generator, discriminator, state, data


def test_compiles_once_and_learns(tutorial_config, mnist):
    generator, discriminator, state, data = make(tutorial_config, mnist)
    step = jax.jit(
        steps.make_train_step(tutorial_config, generator, discriminator), donate_argnums=0
    )
    evaluate = jax.jit(steps.make_evaluate(discriminator, "symmetric", 1000))
    before = float(evaluate(state.eval_params(), mnist.test_images, mnist.test_labels))
    for _ in range(30):
        state = step(state, data)
    assert step._cache_size() == 1
    assert int(state.step) == 30 and int(state.generator.step) == 30
    assert int(state.nonfinite_step) == -1
    after = float(evaluate(state.eval_params(), mnist.test_images, mnist.test_labels))
    assert after > before + 0.1, (before, after)


def test_metric_sums_restart_at_log_steps(tutorial_config, mnist):
    with tutorial_config.unlocked():
        tutorial_config.log_every = 4
    generator, discriminator, state, data = make(tutorial_config, mnist)
    step = jax.jit(steps.make_train_step(tutorial_config, generator, discriminator))
    counts = []
    for _ in range(10):
        state = step(state, data)
        counts.append(int(state.metric_count))
    assert counts == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    means = np.asarray(state.metric_sums / state.metric_count)
    accuracy = means[METRIC_NAMES.index("train_accuracy")]
    assert 0.0 <= accuracy <= 1.0
    for name in ("d_real_probability", "d_fake_probability"):
        assert 0.0 < means[METRIC_NAMES.index(name)] < 1.0


def test_nonfinite_tracker_names_the_first_bad_step(tutorial_config, mnist):
    with tutorial_config.unlocked():
        tutorial_config.learning_rate = 1e30
    generator, discriminator, state, data = make(tutorial_config, mnist)
    step = jax.jit(steps.make_train_step(tutorial_config, generator, discriminator))
    finite_until = None
    for i in range(6):
        state = step(state, data)
        if finite_until is None and int(state.nonfinite_step) >= 0:
            finite_until = i
    assert finite_until is not None
    assert int(state.nonfinite_step) == finite_until  # recorded once, at its first step
    assert not np.isfinite(float(state.nonfinite_value))
    assert 0 <= int(state.nonfinite_metric) < len(METRIC_NAMES)


def test_evaluate_counts_padding_correctly(tutorial_config, mnist):
    """A batch size that does not divide the set: padding never counts as correct."""
    _, discriminator, state, _ = make(tutorial_config, mnist)
    images, labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    whole = steps.make_evaluate(discriminator, "symmetric", 1000)(
        state.eval_params(), images, labels
    )
    padded = steps.make_evaluate(discriminator, "symmetric", 300)(
        state.eval_params(), images, labels
    )
    np.testing.assert_allclose(whole, padded, rtol=1e-6)


def test_debiased_ema_of_parameters():
    """The EMA is exact from the first update: no pull towards its zero start."""
    from sgan_jax.training.state import ParamsEMA

    decay = 0.9
    ema = ParamsEMA.create({"w": jnp.zeros(3)}, decay)
    values = [1.0, 2.0, 4.0]
    for value in values:
        ema = ema.update({"w": jnp.full(3, value)}, decay)
        if value == 1.0:
            np.testing.assert_allclose(ema.params["w"], 1.0, rtol=1e-6)
    weights = np.array([decay**2, decay, 1.0]) * (1 - decay)
    expected = np.dot(weights, values) / weights.sum()
    np.testing.assert_allclose(ema.params["w"], expected, rtol=1e-6)


def test_baseline_step_is_one_program_for_every_seed(mnist):
    """The baseline's key is an argument of its step, not a constant of the seed: seeds 0 and 1
    lower to the same program, which JAX's persistent compilation cache then compiles once."""
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    data = input_pipeline.device_data(mnist, split)
    programs = []
    for seed in (0, 1):
        config = load_config("sgan_mnist")
        config.seed = seed
        _, discriminator = models.create_models(config, (28, 28, 1), 10)
        key = supervised.network_key(config)
        images = input_pipeline.scale_images(mnist.train_images[:2], config.image_range)
        params = discriminator.init({"params": key, **state_lib.model_rngs(key)}, images, True)
        network = state_lib.create_network_state(
            discriminator, params["params"], state_lib.adam(config, config.learning_rate)
        )
        carry = (network, None, jnp.zeros(3, jnp.float32))
        order = supervised.epoch_order(key, 100, 4, config.batch_size)
        step = jax.jit(supervised.make_supervised_step(config, discriminator))
        programs.append(step.lower(carry, data, order, 0, key).as_text())
    assert programs[0] == programs[1]


def test_the_generator_can_take_adam_moments_of_its_own(tutorial_config):
    """generator_adam_b1=0 (Bad GAN's generator): its second update is -lr * g2 / sqrt(v2_hat +
    eps_root), no memory of g1, while the discriminator keeps adam_b1=0.5. Unset, both share."""
    config = tutorial_config
    with config.unlocked():
        config.generator_adam_b1, config.generator_adam_b2 = 0.0, 0.9999
        config.adam_eps, config.adam_eps_root = 0.0, 1e-8
    g1, g2 = jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 3.0])

    def second_update(network):
        tx = state_lib.adam(config, 1e-3, network)
        _, opt = tx.update(g1, tx.init(g1))
        return np.asarray(tx.update(g2, opt)[0])

    v2 = ((1 - 0.9999) * 0.9999 * g1**2 + (1 - 0.9999) * g2**2) / (1 - 0.9999**2)
    expected = -1e-3 * g2 / jnp.sqrt(v2 + 1e-8)
    # float32's 1 - 0.9999^2 carries a 1e-4 relative error; b1 = 0.5 moves the update by 50%.
    np.testing.assert_allclose(second_update("generator"), expected, rtol=1e-3)
    assert not np.allclose(second_update("discriminator"), second_update("generator"), rtol=0.1)
    with config.unlocked():
        config.generator_adam_b1 = config.generator_adam_b2 = None
    np.testing.assert_array_equal(second_update("discriminator"), second_update("generator"))
