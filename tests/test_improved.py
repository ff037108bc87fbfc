"""The Improved-GAN recipe: EMA evaluation, validation-based selection, 32x32x3 datasets."""

import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs import checkpointing
from sgan_jax.runs.metrics import TIMING_FIELDS
from sgan_jax.training import state as state_lib
from sgan_jax.training import steps, supervised, train
from sgan_jax.training.state import create_train_state

from .conftest import IMPROVED_REFERENCE, load_config, read_results, read_rows, tiny


@pytest.fixture(scope="module")
def improved_run(mnist, tmp_path_factory):
    config = tiny(
        load_config("improved_mnist"),
        num_iterations=30,
        num_validation=500,
        supervised_epochs=3,
        ema_decay=0.9,
    )
    workdir = str(tmp_path_factory.mktemp("improved") / "run")
    return config, workdir, train.train_and_evaluate(config, workdir)


def test_trains_with_feature_matching_ema_and_validation(improved_run, mnist):
    config, workdir, results = improved_run
    assert results["params"]["discriminator"] > 1_000_000  # the 784-1000-...-10 MLP
    for key in (
        "validation_accuracy",
        "best_validation_accuracy",
        "selected_test_accuracy",
        "supervised_validation_accuracy",
    ):
        assert results[key] is not None and 0 <= results[key] <= 1, key
    rows = read_rows(workdir)
    evals = [r for r in rows if "validation_accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    best = max(evals, key=lambda r: r["validation_accuracy"])
    # Selection looks at validation only; the test accuracy is reported at that step.
    assert results["best_validation_step"] == best["step"]
    assert results["selected_test_accuracy"] == best["test_accuracy"]
    assert os.path.isdir(os.path.join(workdir, "best_checkpoint", str(best["step"])))
    assert results["test_accuracy"] > 0.3


def test_reported_accuracy_is_that_of_the_ema_weights(improved_run, mnist):
    config, workdir, results = improved_run
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0, 500)
    like = create_train_state(
        config,
        generator,
        discriminator,
        input_pipeline.scale_images(mnist.train_images[split.unlabeled[:500]], "unit"),
        split.pool_sizes,
    )
    state = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 3).restore(30, like)
    evaluate = jax.jit(steps.make_evaluate(discriminator, "unit", 1000))
    test = input_pipeline.first_test_examples(mnist, config.test_examples)
    ema = float(evaluate(state.discriminator_ema.params, test.test_images, test.test_labels))
    raw = float(evaluate(state.discriminator.params, test.test_images, test.test_labels))
    assert ema == results["test_accuracy"]
    assert ema != raw


def test_generator_loss_is_feature_matching(improved_config, mnist):
    """The logged g_loss is the squared distance of mean features, not -log D(G(z))."""
    config = tiny(improved_config, batch_size=50, init_batch_size=50)
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    images = input_pipeline.scale_images(mnist.train_images[:50], "unit")
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    feature_matching = jax.jit(steps.make_train_step(config, generator, discriminator))(state, data)
    with config.unlocked():
        config.method = "sgan"
    non_saturating = jax.jit(steps.make_train_step(config, generator, discriminator))(state, data)
    g_index = 4
    fm, ns = (
        float(feature_matching.metric_sums[g_index]),
        float(non_saturating.metric_sums[g_index]),
    )
    assert fm >= 0 and fm != ns
    # Identical discriminator updates: only the generator's objective differs.
    np.testing.assert_array_equal(feature_matching.metric_sums[:4], non_saturating.metric_sums[:4])


def test_learning_rates_decay_linearly_to_zero(improved_config, mnist):
    """lr_decay_start=0.5 of 4 iterations: full rate for updates 0-2, half for update 3, and 0
    from the end on, for both networks."""
    config = tiny(improved_config, batch_size=50, init_batch_size=50)
    with config.unlocked():
        config.num_iterations = 4
        config.lr_decay_start = 0.5
    schedule = state_lib.learning_rate_schedule(config, 3e-3)
    np.testing.assert_allclose([schedule(i) for i in range(6)], [3e-3] * 3 + [1.5e-3, 0, 0])
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    images = input_pipeline.scale_images(mnist.train_images[:50], "unit")
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    train_step = jax.jit(steps.make_train_step(config, generator, discriminator))
    history = [state]
    for _ in range(5):
        history.append(train_step(history[-1], data))

    def moved(a, b):
        return any(
            not np.array_equal(x, y)
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    for network in ("generator", "discriminator"):
        params = [getattr(s, network).params for s in history]
        assert moved(params[3], params[4]), network  # update 3: half the rate
        assert not moved(params[4], params[5]), network  # update 4: rate 0


def test_improved_config_is_the_paper_protocol(improved_config):
    """fm.py: 300 epochs of 600 steps of 100, Adam at a constant 3e-3 with mom1 0.5, weights
    averaged at rate 1e-4, both unlabeled streams in passes; the baseline's average spans at most
    half its steps. The decayed 60,000-step schedule is a config file of its own."""
    config = improved_config
    assert (config.num_iterations, config.batch_size, config.num_labeled) == (300 * 600, 100, 100)
    assert state_lib.learning_rate_schedule(config, config.learning_rate) == 3e-3  # no schedule
    assert config.adam_b1 == 0.5 and 1 - config.ema_decay == pytest.approx(1e-4)
    assert config.labeled_sampling == config.unlabeled_sampling == "epoch"
    assert config.method == "improved_gan"
    baseline_steps = config.supervised_epochs * -(-config.num_labeled // config.batch_size)
    assert 1 / (1 - config.supervised_ema_decay) <= baseline_steps / 2
    short = load_config("improved_mnist_60k_decay")
    schedule = state_lib.learning_rate_schedule(short, short.learning_rate)
    assert short.num_iterations == 60_000 and schedule(40_000) == pytest.approx(3e-3)
    assert schedule(60_000) == 0


def _baseline_weights(mnist, split, **overrides):
    """The weights the supervised baseline evaluates, trained as `overrides` say."""
    config = tiny(load_config("improved_mnist"), batch_size=100, init_batch_size=100, **overrides)
    _, discriminator = models.create_models(config, (28, 28, 1), 10)
    evaluated = []

    def evaluate(params, images, labels):
        evaluated.append(params)
        return jnp.float32(0)

    supervised.train_supervised(config, discriminator, mnist, split, evaluate)
    return evaluated[0]


def test_baseline_averages_its_own_iterates_at_its_own_rate(mnist):
    """The baseline evaluates the debiased average of its own iterates at supervised_ema_decay,
    not at the GAN's ema_decay: after two updates, (decay * w1 + w2) / (1 + decay)."""
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    w1, w2 = (
        _baseline_weights(mnist, split, supervised_epochs=epochs, supervised_ema_decay=0.0)
        for epochs in (1, 2)
    )
    decay = 0.5
    expected = jax.tree.map(lambda a, b: (decay * a + b) / (1 + decay), w1, w2)
    for gan_decay in (0.0, 0.9999):
        averaged = _baseline_weights(
            mnist, split, supervised_epochs=2, supervised_ema_decay=decay, ema_decay=gan_decay
        )
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), averaged, expected
        )


def test_chunked_dispatch_matches_single_steps(improved_reference_run, tmp_path):
    """Several iterations per jitted call (the GPU loop) give the same run as one by one."""
    chunked = train.train_and_evaluate(
        tiny(load_config("improved_mnist"), **IMPROVED_REFERENCE, steps_per_dispatch=5),
        str(tmp_path / "chunked"),
    )
    single = read_results(improved_reference_run)
    rows_single, rows_chunked = read_rows(improved_reference_run), read_rows(tmp_path / "chunked")
    assert [r["step"] for r in rows_single] == [r["step"] for r in rows_chunked]
    for a, b in zip(rows_single, rows_chunked, strict=True):
        for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(single["test_accuracy"], chunked["test_accuracy"], atol=2e-3)


# Each dataset once and each model once keeps CI short; the models are shape-generic.
@pytest.mark.parametrize("dataset,model", [("cifar10", "improved"), ("svhn_cropped", "tutorial")])
def test_32x32x3_training_on_mock_data(dataset, model, tmp_path, monkeypatch):
    monkeypatch.delenv("SGAN_MANUAL_DIR", raising=False)  # mock_data prepares nothing
    config = tiny(
        load_config("improved_mnist" if model == "improved" else "sgan_mnist"),
        dataset=dataset,
        data_dir=str(tmp_path / "tfds"),
        manual_dir=None,
        image_range="symmetric",
        num_labeled=20,
        num_validation=20 if model == "improved" else 0,
        label_selection="first",
        batch_size=8,
        init_batch_size=16,
        num_iterations=4,
        log_every=2,
        eval_every=2,
        sample_every=4,
        checkpoint_every=2,
        supervised_epochs=1 if model == "tutorial" else 0,
        eval_batch_size=64,
        test_examples=0,  # all 128 of the mock split
    )
    with tfds.testing.mock_data(num_examples=128):
        results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["dataset"] == dataset
    assert np.isfinite(results["test_accuracy"])
    rows = read_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["d_loss_supervised"]) for r in rows)
    assert os.path.exists(tmp_path / "run" / "samples" / "step_0000004.png")


def test_early_stopping_on_validation_accuracy(mnist, tmp_path):
    """With nothing learned (a vanishing learning rate) validation accuracy never improves after
    the first eval, so patience 2 stops the run at the third eval and keeps its checkpoint."""
    config = tiny(
        load_config("improved_mnist"),
        num_iterations=40,
        eval_every=4,
        log_every=4,
        checkpoint_every=0,
        num_validation=200,
        early_stopping_patience=2,
        learning_rate=1e-12,
        supervised_epochs=0,
    )
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["stopped_early"] and results["final_step"] == 12
    assert results["best_validation_step"] == 4
    assert [r["step"] for r in read_rows(tmp_path / "run")] == [4, 8, 12]
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "12")
    # Running it again does not train on: the stop is remembered from metrics.jsonl.
    again = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert again["final_step"] == 12 and again["test_accuracy"] == results["test_accuracy"]


class _Echo(nn.Module):
    """A 'generator' that always outputs one fixed image (with a parameter, so G can step)."""

    pixels: tuple  # the image's values, flattened (a module's fields must be hashable)

    @nn.compact
    def __call__(self, z, train: bool = True):
        bias = self.param("bias", nn.initializers.zeros, ())
        image = jnp.asarray(self.pixels, jnp.float32).reshape(28, 28, 1)
        return jnp.broadcast_to(image, (z.shape[0], 28, 28, 1)) + 0.0 * bias


def test_feature_matching_passes_draw_their_own_noise(improved_config, mnist):
    """fm.py's mom_real and mom_gen are two get_output calls: separate Gaussian-noise draws.
    With a generator that outputs exactly the real image the real batch holds, shared noise
    would make the two passes' features identical and the loss exactly 0."""
    config = tiny(improved_config, batch_size=100, init_batch_size=100)
    index = int(np.flatnonzero(mnist.train_labels == 3)[0])
    image = input_pipeline.scale_images(mnist.train_images[index], "unit")
    _, discriminator = models.create_models(config, (28, 28, 1), 10)
    generator = _Echo(tuple(image.reshape(-1).tolist()))
    split = input_pipeline.LabelSplit(
        labeled=np.arange(100, dtype=np.int32),
        unlabeled=np.full(300, index, np.int32),  # every unlabeled batch: that one image
        validation=np.zeros(0, np.int32),
    )
    images = input_pipeline.scale_images(mnist.train_images[:100], "unit")
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    state = jax.jit(steps.make_train_step(config, generator, discriminator))(state, data)
    g_loss = float(state.metric_sums[methods.get(config.method).metric_names.index("g_loss")])
    assert g_loss > 1e-4, g_loss


def _state_like(config, mnist):
    """A fresh state of `config` on MNIST, the structure its checkpoints restore into."""
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(
        mnist.train_labels, 100, "balanced", 10, config.data_seed, config.num_validation
    )
    images = input_pipeline.scale_images(mnist.train_images[: config.init_batch_size], "unit")
    return create_train_state(config, generator, discriminator, images, split.pool_sizes)


def test_resumed_mid_run_the_improved_recipe_is_the_run_never_stopped(mnist, tmp_path):
    """A run killed after its checkpoint at step 10 (the later checkpoints and results gone, as
    after a SIGKILL at step 14) resumes to the same rows, accuracies, best checkpoint and final
    state: the EMA and the three samplers' current passes (the labeled one turns over every
    step: 100 labels, batches of 100) included."""
    config = tiny(
        load_config("improved_mnist"),
        num_validation=200,
        eval_every=5,
        checkpoint_every=5,
        keep_checkpoints=10,
        supervised_epochs=0,
    )
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    reference = train.train_and_evaluate(config, str(whole))
    shutil.copytree(whole, resumed)
    for name in ("15", "20"):
        shutil.rmtree(resumed / "checkpoints" / name)
    (resumed / "results.json").unlink()
    results = train.train_and_evaluate(config, str(resumed))
    untimed = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_rows(whole)]
    assert [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_rows(resumed)] == (
        untimed
    )
    for key in ("test_accuracy", "selected_test_accuracy", "best_validation_step"):
        assert results[key] == reference[key], key
    like = _state_like(config, mnist)
    for folder, step in (
        ("checkpoints", 20),
        ("best_checkpoint", reference["best_validation_step"]),
    ):
        restored = [
            checkpointing.Checkpointer(str(run / folder), None).restore(step, like)
            for run in (whole, resumed)
        ]
        assert set(restored[0].samplers) == {"labeled", "unlabeled", "unlabeled_g"}
        assert restored[0].discriminator_ema is not None
        for a, b in zip(*(jax.tree.leaves(r) for r in restored), strict=True):
            np.testing.assert_array_equal(
                jax.random.key_data(a) if _is_key(a) else a,
                jax.random.key_data(b) if _is_key(b) else b,
            )


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def test_hidden_weight_norm_scales_stay_frozen_while_the_output_scale_trains(
    improved_config, mnist
):
    """fm.py's nn.DenseLayer keeps each hidden layer's data-initialised scale g; only the output
    layer (train_scale=True) learns its own. Biases and directions train everywhere."""
    config = tiny(improved_config, batch_size=50, init_batch_size=50)
    state = _state_like(config, mnist)
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    train_step = jax.jit(steps.make_train_step(config, generator, discriminator))
    trained = state
    for _ in range(3):
        trained = train_step(trained, data)
    before, after = state.discriminator.params, trained.discriminator.params
    for i in range(5):
        layer = f"WeightNormDense_{i}"
        np.testing.assert_array_equal(before[layer]["scale"], after[layer]["scale"], layer)
        assert not np.array_equal(before[layer]["bias"], after[layer]["bias"]), layer
        assert not np.array_equal(before[layer]["kernel"], after[layer]["kernel"]), layer
    assert not np.array_equal(
        before["WeightNormDense_5"]["scale"], after["WeightNormDense_5"]["scale"]
    )


def test_feature_matching_reads_the_last_hidden_layer_before_its_noise(improved_config):
    """fm.py's features are layers[-3], the last DenseLayer's ReLU output, before the Gaussian
    noise that feeds the output layer: never negative, and in training the logits are not the
    output layer of them (the noise lies between), while in inference they are."""
    _, discriminator = models.create_models(improved_config, (28, 28, 1), 10)
    images = jax.random.uniform(jax.random.key(0), (64, 28, 28, 1))
    params = discriminator.init(
        {"params": jax.random.key(1), **state_lib.model_rngs(jax.random.key(2))}, images, train=True
    )
    output = params["params"]["WeightNormDense_5"]
    direction = output["kernel"] / jnp.linalg.norm(output["kernel"], axis=0, keepdims=True)

    def output_layer(features):
        return features @ direction * output["scale"] + output["bias"]

    rngs = state_lib.model_rngs(jax.random.key(3))
    logits, features = discriminator.apply(
        params, images, train=True, rngs=rngs, return_features=True
    )
    assert features.shape == (64, 250) and float(features.min()) >= 0
    assert not np.allclose(logits, output_layer(features), atol=1e-3)
    logits, features = discriminator.apply(params, images, train=False, return_features=True)
    np.testing.assert_allclose(logits, output_layer(features), rtol=1e-5, atol=1e-5)
