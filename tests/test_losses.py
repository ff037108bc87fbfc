"""The SGAN heads and losses against the tutorial's formulas and hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax import methods
from sgan_jax.methods import losses


def tutorial_d(logits):
    """The tutorial's predict(x): 1 - 1 / (sum(exp(x)) + 1)."""
    return 1.0 - 1.0 / (np.sum(np.exp(logits), axis=-1) + 1.0)


def test_head_equals_tutorial_formula_on_moderate_logits():
    logits = np.random.default_rng(0).uniform(-8, 8, size=(64, 10)).astype(np.float64)
    np.testing.assert_allclose(
        losses.discriminator_probability(jnp.asarray(logits, jnp.float32)),
        tutorial_d(logits),
        rtol=1e-5,
    )
    # The binary cross-entropies of that probability, as Keras computes them.
    d = tutorial_d(logits)
    np.testing.assert_allclose(losses.real_loss(logits), np.mean(-np.log(d)), rtol=1e-5)
    np.testing.assert_allclose(losses.fake_loss(logits), np.mean(-np.log(1 - d)), rtol=1e-5)


def test_hand_computed_values():
    zeros = jnp.zeros((1, 10))
    # Z = 10: D = 10/11.
    assert math.isclose(float(losses.discriminator_probability(zeros)[0]), 10 / 11, rel_tol=1e-6)
    assert math.isclose(float(losses.real_loss(zeros)), math.log(11 / 10), rel_tol=1e-6)
    assert math.isclose(float(losses.fake_loss(zeros)), math.log(11), rel_tol=1e-6)
    assert math.isclose(
        float(losses.non_saturating_generator_loss(zeros)), math.log(11 / 10), rel_tol=1e-6
    )
    # Uniform logits: cross-entropy log(10); a confident right answer: about 0.
    assert math.isclose(
        float(losses.supervised_loss(zeros, jnp.array([3]))), math.log(10), rel_tol=1e-6
    )
    confident = jnp.array([[0.0, 20.0, 0.0]])
    assert float(losses.supervised_loss(confident, jnp.array([1]))) < 1e-8
    assert math.isclose(
        float(losses.supervised_loss(confident, jnp.array([0]))), 20.0, rel_tol=1e-6
    )
    # Feature matching: means (1, 2) and (3, 2) -> ((1-3)^2 + 0) / 2 = 2.
    real = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    fake = jnp.array([[3.0, 2.0], [3.0, 2.0]])
    assert float(losses.feature_matching_loss(real, fake)) == 2.0
    assert float(losses.accuracy(jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([0, 1]))) == 0.5


def test_stable_for_huge_logits():
    for value in (1e4, -1e4):
        logits = jnp.full((4, 10), value).at[:, 3].set(value / 2)
        for loss in (losses.real_loss, losses.fake_loss, losses.non_saturating_generator_loss):
            value_, grad = jax.value_and_grad(loss)(logits)
            assert jnp.isfinite(value_), (loss.__name__, value)
            assert jnp.all(jnp.isfinite(grad)), (loss.__name__, value)
        labels = jnp.array([3, 0, 1, 9])
        ce, grad = jax.value_and_grad(losses.supervised_loss)(logits, labels)
        assert jnp.isfinite(ce) and jnp.all(jnp.isfinite(grad))
    # The exact limits: real loss of a sure-real image is 0, fake loss is its logit.
    assert float(losses.real_loss(jnp.full((1, 10), 1e4))) == 0.0
    np.testing.assert_allclose(
        losses.fake_loss(jnp.full((1, 10), 1e4)), 1e4 + math.log(10), rtol=1e-6
    )
    # Where the tutorial's own formula overflows to inf/nan.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        assert not np.isfinite(np.log(1 - tutorial_d(np.full((1, 10), 1e4, np.float32))))


def test_discriminator_objective_weighs_the_unlabeled_half():
    """At zero logits: CE = log 10, -log D = log 1.1, -log(1 - D) = log 11, D = 10/11."""
    zeros = jnp.zeros((4, 10))
    labels = jnp.array([0, 1, 2, 3])
    for weight in (0.0, 1.0, 2.5):
        loss, metrics = losses.discriminator_loss(zeros, zeros, zeros, labels, weight)
        unsupervised = 0.5 * (math.log(1.1) + math.log(11))
        assert math.isclose(float(loss), math.log(10) + weight * unsupervised, rel_tol=1e-6)
    assert math.isclose(float(metrics["d_loss_unsupervised"]), unsupervised, rel_tol=1e-6)
    assert math.isclose(float(metrics["d_real_probability"]), 10 / 11, rel_tol=1e-6)
    assert float(metrics["train_accuracy"]) == 0.25  # argmax of ties is class 0
    # Every metric the train step tracks, except the generator's own loss, comes from here.
    assert set(metrics) == set(methods.get("sgan").metric_names) - {"g_loss"}
