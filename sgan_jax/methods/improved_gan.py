"""Improved-GAN feature matching (Salimans et al. 2016, openai/improved-gan,
`mnist_svhn_cifar10/train_mnist_feature_matching.py`).

Discriminator: the SGAN objective (`sgan.py`). Generator: feature matching, the squared distance
between the mean last-hidden-layer features (before that layer's noise) of a generated batch and
of a second, independent unlabeled batch, drawn from its own stream as the reference code's
`trainx_unl2` is. The two discriminator passes get fresh noise and dropout each, as Theano draws
them.
"""

import jax

from sgan_jax.methods import base, losses, sgan
from sgan_jax.runs.errors import ConfigError


class ImprovedGAN(sgan.SGAN):
    name = "improved_gan"
    config_defaults = dict(**sgan.SGAN.config_defaults, feature_distance="squared")
    config_help = dict(
        **sgan.SGAN.config_help,
        feature_distance="squared: mean((m_real - m_fake)^2), the MNIST code's | absolute: "
        "mean(|m_real - m_fake|), the CIFAR-10 and SVHN code's",
    )
    streams = {"unlabeled_g": base.Stream(pool="unlabeled", key_id=9)}

    def check_config(self, config) -> None:
        super().check_config(config)
        if config.feature_distance not in losses.FEATURE_DISTANCES:
            raise ConfigError(
                "feature_distance",
                f"must be one of {', '.join(losses.FEATURE_DISTANCES)}; "
                f"got {config.feature_distance!r}",
            )

    def generator_loss(self, config, nets, g_params, d_params, extra, z_key, key, context=None):
        real_key, fake_key = jax.random.split(key)
        _, real_features = nets.discriminate(
            d_params, extra["unlabeled_g"], real_key, return_features=True
        )
        real_features = jax.lax.stop_gradient(real_features)
        fake = nets.generate(g_params, z_key)
        _, fake_features = nets.discriminate(d_params, fake, fake_key, return_features=True)
        loss = losses.feature_matching_loss(real_features, fake_features, config.feature_distance)
        return loss, dict(g_loss=loss)


METHOD = ImprovedGAN()
