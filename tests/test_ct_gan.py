"""CT-GAN (methods/ct_gan.py): the consistency term at hand-computed cases, the recipe's config,
and a run through the real CLI whose two unlabeled passes differ only by their noise."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax import methods
from sgan_jax.methods import ct_gan, losses
from sgan_jax.methods.base import DiscriminatorBatch

from .conftest import load_config, read_results, read_rows, run_train


def test_consistency_is_zero_when_both_passes_are_the_same():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(8, 10)), jnp.float32)
    assert float(ct_gan.consistency_loss(logits, logits, weight=0.1)) == 0.0


def test_consistency_of_a_known_pair_of_softmaxes():
    """softmax([0, 0]) = (1/2, 1/2), softmax([log 3, 0]) = (3/4, 1/4): a squared difference of
    1/16 for each class, so 1/16 per image, times LAMBDA_2; a margin above that leaves 0."""
    first = jnp.zeros((2, 2))
    second = jnp.asarray([[math.log(3.0), 0.0], [0.0, 0.0]])
    # Image 0 differs by 1/16, image 1 not at all: the batch mean is half of 0.1 / 16.
    value = float(ct_gan.consistency_loss(first, second, weight=0.1))
    assert math.isclose(value, 0.1 / 16 / 2, rel_tol=1e-6)
    assert float(ct_gan.consistency_loss(first, second, weight=0.1, margin=0.01)) == 0.0
    # The margin applies per image, before the batch mean: 0.1/16 - 0.005 on image 0 only.
    with_margin = float(ct_gan.consistency_loss(first, second, weight=0.1, margin=0.005))
    assert math.isclose(with_margin, (0.1 / 16 - 0.005) / 2, rel_tol=1e-5)


@dataclasses.dataclass
class _KnownLogits:
    """A stand-in for the harness's networks that returns fixed logits for the four batches
    CT-GAN concatenates: the objective alone is under test."""

    logits: jnp.ndarray

    def discriminate(self, d_params, images, key, return_features=False):
        assert images.shape[0] == self.logits.shape[0]
        return self.logits


def test_discriminator_objective_adds_half_the_weighted_consistency():
    """CT_MNIST.py: loss_lab + w * 0.5 * (CT_ + real + fake), the second unlabeled pass read by
    the consistency term alone."""
    batch = 2
    images = jnp.zeros((batch, 28, 28, 1))
    labels = jnp.asarray([0, 1])
    unlabeled_again = jnp.asarray([[math.log(3.0)] + [0.0] * 9, [0.0] * 10])
    logits = jnp.concatenate([jnp.zeros((3 * batch, 10)), unlabeled_again])
    config = load_config("ct_gan_mnist")
    for weight in (1.0, 2.5):
        with config.unlocked():
            config.unlabeled_weight = weight
        loss, metrics = methods.get("ct_gan").discriminator_loss(
            config,
            _KnownLogits(logits),
            None,
            DiscriminatorBatch(images, labels, images, images),
            None,
        )
        zeros = jnp.zeros((batch, 10))
        base, _ = losses.discriminator_loss(zeros, zeros, zeros, labels, weight)
        # Image 0 against uniform: softmax([log 3, 0, ..., 0]) is (3/12, 1/12, ..., 1/12), so
        # (3/12 - 1/10)^2 + 9 (1/12 - 1/10)^2 over 10 classes; image 1 adds nothing.
        per_class = ((3 / 12 - 0.1) ** 2 + 9 * (1 / 12 - 0.1) ** 2) / 10
        consistency = 0.1 * per_class / 2
        assert math.isclose(float(metrics["d_loss_consistency"]), consistency, rel_tol=1e-5)
        expected = float(base) + weight * 0.5 * consistency
        assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_config_is_the_improved_recipe_plus_the_consistency_term():
    ct, improved = load_config("ct_gan_mnist").to_dict(), load_config("improved_mnist").to_dict()
    assert ct.pop("method") == "ct_gan" and improved.pop("method") == "improved_gan"
    assert (ct.pop("consistency_weight"), ct.pop("consistency_margin")) == (0.1, 0.0)
    assert ct == improved


@pytest.mark.parametrize("noise", [True, False])
def test_the_two_unlabeled_passes_differ_by_their_noise_alone(tmp_path, noise):
    """Through the real CLI: with the recipe's Gaussian noise the two passes disagree a little;
    without any noise they are the same pass, and the consistency term is 0 up to rounding (the
    two copies sit at other rows of the batched matmuls)."""
    overrides = ["--config.num_iterations=10", "--config.supervised_epochs=0"]
    if not noise:
        overrides += ["--config.d_input_noise=0", "--config.d_hidden_noise=0"]
    run_train(tmp_path / "run", *overrides, config_file="ct_gan_mnist.py")
    logged = [row["d_loss_consistency"] for row in read_rows(tmp_path / "run") if "g_loss" in row]
    assert len(logged) == 2
    if noise:
        assert all(1e-6 < value < 0.1 for value in logged), logged
    else:
        assert all(0 <= value < 1e-12 for value in logged), logged
    results = read_results(tmp_path / "run")
    assert results["final_step"] == 10 and 0 < results["test_accuracy"] <= 1
