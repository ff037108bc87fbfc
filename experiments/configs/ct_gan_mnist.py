"""CT-GAN on MNIST with 100 labels, at the authors' protocol.

Wei et al. 2018, biuyq/CT-GAN `CT-GANs/Theano_classifier/CT_MNIST.py`: the Improved-GAN
feature-matching recipe (improved_mnist.py: the networks, Adam at 3e-3, 300 epochs of 600 steps,
the averaged discriminator evaluated) plus the consistency term of sgan_jax/methods/ct_gan.py.
The paper reports 0.89 +- 0.13% test error at 100 labels.
"""

from experiments.configs import improved_mnist
from sgan_jax.training import config as config_lib


def get_config():
    config = improved_mnist.get_config()  # CT_MNIST.py: "highly based on the improved gans"
    config_lib.set_method(config, "ct_gan")
    config.consistency_weight = 0.1  # LAMBDA_2 = 0.1
    config.consistency_margin = 0.0  # factor_M = 0.0
    return config
