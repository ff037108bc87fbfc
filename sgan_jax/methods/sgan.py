"""The tutorial's SGAN (Salimans et al. 2016's semi-supervised GAN, as the Keras tutorial trains
it; ../shared/seed/sgan_tutorial.zh.txt).

Discriminator: the supervised cross-entropy on a labeled batch plus `unlabeled_weight` times the
real/fake loss 0.5 * (-log D(x_unlabeled) - log(1 - D(G(z)))), with D(x) = Z / (Z + 1) and
Z = sum(exp(logits)); the three batches go through the network in one pass.
Generator: the non-saturating -log D(G(z)), on fresh noise, against the updated discriminator.
"""

import jax.numpy as jnp

from sgan_jax.methods import base, losses


class SGAN(base.Method):
    name = "sgan"
    config_defaults = dict(unlabeled_weight=1.0)
    config_help = dict(unlabeled_weight="weight of the real/fake loss against the supervised one")
    metric_names = (
        "d_loss_supervised",
        "d_loss_unsupervised",
        "d_loss_real",
        "d_loss_fake",
        "g_loss",
        "train_accuracy",
        "d_real_probability",
        "d_fake_probability",
    )

    def check_config(self, config) -> None:
        super().check_config(config)
        base.check_non_negative(config, "unlabeled_weight")

    def discriminator_loss(self, config, nets, d_params, batch, key):
        images = jnp.concatenate([batch.labeled, batch.unlabeled, batch.fake])
        labeled, unlabeled, fake = jnp.split(nets.discriminate(d_params, images, key), 3)
        return losses.discriminator_loss(
            labeled, unlabeled, fake, batch.labels, config.unlabeled_weight
        )

    def generator_loss(self, config, nets, g_params, d_params, extra, z_key, key, context=None):
        fake = nets.generate(g_params, z_key)
        loss = losses.non_saturating_generator_loss(nets.discriminate(d_params, fake, key))
        return loss, dict(g_loss=loss)


METHOD = SGAN()
