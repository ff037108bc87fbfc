"""CT-GAN (methods/ct_gan.py): the consistency term at hand-computed cases, the recipe's config,
and a run through the real CLI whose two unlabeled passes differ only by their noise."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.methods import ct_gan, losses
from sgan_jax.methods.base import DiscriminatorBatch
from sgan_jax.nets import models
from sgan_jax.training import steps
from sgan_jax.training.state import create_train_state

from .conftest import load_config, read_results, read_rows, run_train, tiny


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


def test_through_the_cli_the_two_unlabeled_passes_disagree_by_their_noise(tmp_path):
    """The recipe as a user runs it: 10 steps, the consistency term logged beside the rest."""
    run_train(
        tmp_path / "run",
        "--config.num_iterations=10",
        "--config.supervised_epochs=0",
        config_file="ct_gan_mnist.py",
    )
    logged = [row["d_loss_consistency"] for row in read_rows(tmp_path / "run") if "g_loss" in row]
    assert len(logged) == 2 and all(1e-6 < value < 0.1 for value in logged), logged
    results = read_results(tmp_path / "run")
    assert results["final_step"] == 10 and 0 < results["test_accuracy"] <= 1


def test_without_noise_the_two_passes_are_one(mnist):
    """With the recipe's Gaussian noise off, the second unlabeled pass is the first one again:
    the consistency term is 0 up to rounding (the two copies sit at other rows of the batched
    matmuls). So what the CLI run logs is the noise's doing, not a mismatch of batches."""
    config = tiny(load_config("ct_gan_mnist"), d_input_noise=0.0, d_hidden_noise=0.0)
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0)
    images = input_pipeline.scale_images(mnist.train_images[:500], "unit")
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    train_step = jax.jit(steps.make_train_step(config, generator, discriminator))
    index = methods.get("ct_gan").metric_names.index("d_loss_consistency")
    for _ in range(2):
        state = train_step(state, data)
        assert 0 <= float(state.metric_sums[index]) < 1e-12
