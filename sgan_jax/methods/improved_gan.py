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


class ImprovedGAN(sgan.SGAN):
    name = "improved_gan"
    streams = {"unlabeled_g": base.Stream(pool="unlabeled", key_id=9)}

    def generator_loss(self, config, nets, g_params, d_params, extra, z_key, key):
        real_key, fake_key = jax.random.split(key)
        _, real_features = nets.discriminate(
            d_params, extra["unlabeled_g"], real_key, return_features=True
        )
        real_features = jax.lax.stop_gradient(real_features)
        fake = nets.generate(g_params, z_key)
        _, fake_features = nets.discriminate(d_params, fake, fake_key, return_features=True)
        loss = losses.feature_matching_loss(real_features, fake_features)
        return loss, dict(g_loss=loss)


METHOD = ImprovedGAN()
