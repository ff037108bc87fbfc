"""The tutorial's SGAN on MNIST with 100 labels (../shared/seed/sgan_tutorial.zh.txt).

The harness's defaults are the tutorial's values (sgan_jax/training/config.py, docs/CONFIG.md);
the networks are `sgan_jax/nets/models.py`'s "tutorial" pair, the method `sgan_jax/methods/sgan.py`.
"""

import ml_collections

from sgan_jax.training import config as config_lib


def get_config() -> ml_collections.ConfigDict:
    config = config_lib.base_config("sgan")
    config.num_labeled = 100  # the tutorial's 100 labels...
    config.label_selection = "first"  # ...the first 100 training images
    config.model = "tutorial"
    config.batch_size = 32
    config.num_iterations = 20_000
    config.learning_rate = 2e-4  # Adam(0.0002, 0.5), both networks
    config.adam_b1 = 0.5
    config.supervised_epochs = 30  # mnist_classifier.fit(..., epochs=30)
    return config
