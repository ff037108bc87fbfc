"""CT-GAN's semi-supervised MNIST recipe (Wei et al., ICLR 2018, "Improving the Improved Training
of Wasserstein GANs"; biuyq/CT-GAN, `CT-GANs/Theano_classifier/CT_MNIST.py`, "CT_MNIST.py" below).

It is Improved-GAN feature matching (`improved_gan.py`) plus a consistency term on the
discriminator: two passes over the same unlabeled batch, each with its own Gaussian noise, should
give the same class probabilities. As CT_MNIST.py computes it:

    loss_ct = mean over classes of (softmax(unl) - softmax(unl2))^2      one value per image
    CT_ = mean over the batch of max(LAMBDA_2 * loss_ct - factor_M, 0)   LAMBDA_2 = 0.1, M = 0
    loss_unl = 0.5 * (CT_ - mean(l_unl) + mean(softplus(l_unl)) + mean(softplus(l_fake)))
    D's loss = loss_lab + unlabeled_weight * loss_unl

so the term enters with the real/fake loss's factor 0.5 and the unlabeled weight. The first
pass is the one the real/fake loss reads; the second serves the consistency term alone. The
four batches (labeled, unlabeled, generated, the unlabeled again) go through the network in one
pass: its noise is drawn per image, so each copy of an unlabeled image gets its own.
The generator's objective, the networks and the optimiser are Improved-GAN's.
"""

import jax
import jax.numpy as jnp

from sgan_jax.methods import base, improved_gan, losses


def consistency_loss(logits, logits_again, weight: float, margin: float = 0.0):
    """CT_MNIST.py's CT_: the batch mean of max(weight * mean_k (p_k - q_k)^2 - margin, 0), with
    p and q the softmaxes of two passes over the same images."""
    per_image = jnp.mean(
        jnp.square(jax.nn.softmax(logits, axis=-1) - jax.nn.softmax(logits_again, axis=-1)),
        axis=-1,
    )
    return jnp.mean(jnp.maximum(weight * per_image - margin, 0.0))


class CTGAN(improved_gan.ImprovedGAN):
    name = "ct_gan"
    config_defaults = dict(
        **improved_gan.ImprovedGAN.config_defaults,
        consistency_weight=0.1,  # CT_MNIST.py: LAMBDA_2 = 0.1
        consistency_margin=0.0,  # CT_MNIST.py: factor_M = 0.0
    )
    config_help = dict(
        **improved_gan.ImprovedGAN.config_help,
        consistency_weight="LAMBDA_2: the consistency term's weight inside the unlabeled loss",
        consistency_margin="factor_M: per-image margin below which no consistency loss counts",
    )
    metric_names = (*improved_gan.ImprovedGAN.metric_names, "d_loss_consistency")
    log_line = (*improved_gan.ImprovedGAN.log_line, "d_loss_consistency")

    def check_config(self, config) -> None:
        super().check_config(config)
        base.check_non_negative(config, "consistency_weight", "consistency_margin")

    def discriminator_loss(self, config, nets, d_params, batch, key):
        images = jnp.concatenate([batch.labeled, batch.unlabeled, batch.fake, batch.unlabeled])
        labeled, unlabeled, fake, unlabeled_again = jnp.split(
            nets.discriminate(d_params, images, key), 4
        )
        loss, metrics = losses.discriminator_loss(
            labeled, unlabeled, fake, batch.labels, config.unlabeled_weight
        )
        consistency = consistency_loss(
            unlabeled, unlabeled_again, config.consistency_weight, config.consistency_margin
        )
        metrics["d_loss_consistency"] = consistency
        return loss + config.unlabeled_weight * 0.5 * consistency, metrics


METHOD = CTGAN()
