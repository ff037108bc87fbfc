"""The SGAN heads and losses, all from the discriminator's class logits.

Supervised head: softmax over the logits. Unsupervised head: D(x) = Z / (Z + 1) with
Z = sum_k exp(logit_k), which is sigmoid(logsumexp(logits)). Every real/fake loss is a binary
cross-entropy on the logit s = logsumexp(logits), computed with softplus (optax's
`sigmoid_binary_cross_entropy`), so nothing is ever exponentiated and logits of +-1e4 stay finite.
"""

import jax
import jax.numpy as jnp
import optax


def real_fake_logit(logits):
    """s = log Z = logsumexp(logits): the logit of D(x)."""
    return jax.nn.logsumexp(logits, axis=-1)


def discriminator_probability(logits):
    """D(x) = Z / (Z + 1), the probability that x is real."""
    return jax.nn.sigmoid(real_fake_logit(logits))


def supervised_loss(logits, labels):
    """Mean softmax cross-entropy on labeled images."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def real_loss(logits):
    """-log D(x), mean over real images."""
    s = real_fake_logit(logits)
    return optax.sigmoid_binary_cross_entropy(s, jnp.ones_like(s)).mean()


def fake_loss(logits):
    """-log(1 - D(G(z))), mean over generated images."""
    s = real_fake_logit(logits)
    return optax.sigmoid_binary_cross_entropy(s, jnp.zeros_like(s)).mean()


def non_saturating_generator_loss(logits):
    """-log D(G(z)): the generator's loss when it tries to make D call its images real."""
    return real_loss(logits)


FEATURE_DISTANCES = ("squared", "absolute")


def feature_matching_loss(real_features, fake_features, distance: str = "squared"):
    """The mean over features of the squared (the MNIST code's) or absolute (the CIFAR-10 and
    SVHN code's) difference between the mean features of real and generated batches."""
    difference = real_features.mean(axis=0) - fake_features.mean(axis=0)
    if distance == "absolute":
        return jnp.mean(jnp.abs(difference))
    return jnp.mean(jnp.square(difference))


def accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def discriminator_loss(labeled_logits, unlabeled_logits, fake_logits, labels, unlabeled_weight):
    """The discriminator's objective and its metrics: the supervised cross-entropy on the labeled
    batch plus `unlabeled_weight` times 0.5 * (-log D(x_unlabeled) - log(1 - D(G(z))))."""
    supervised = supervised_loss(labeled_logits, labels)
    real = real_loss(unlabeled_logits)
    fake = fake_loss(fake_logits)
    unsupervised = 0.5 * (real + fake)
    metrics = dict(
        d_loss_supervised=supervised,
        d_loss_unsupervised=unsupervised,
        d_loss_real=real,
        d_loss_fake=fake,
        train_accuracy=accuracy(labeled_logits, labels),
        d_real_probability=discriminator_probability(unlabeled_logits).mean(),
        d_fake_probability=discriminator_probability(fake_logits).mean(),
    )
    return supervised + unlabeled_weight * unsupervised, metrics
