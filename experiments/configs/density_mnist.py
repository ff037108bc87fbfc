"""The density model Bad GAN's low-density term reads, for MNIST (experiments/train_density.py).

Bad GAN (kimiyoung/ssl_bad_gan) loads a PixelCNN++ trained by a script it never released; ours
is trained here, on the training images but a held-out set, which Bad GAN's threshold uses.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.dataset = "mnist"
    config.data_dir = config_dict.placeholder(str)  # unset: $TFDS_DATA_DIR, else tfds' default
    config.manual_dir = config_dict.placeholder(str)  # unset: $SGAN_MANUAL_DIR
    config.test_examples = 0  # the test split's first N images for the test figure; 0: all
    config.data_seed = 0  # which training images are held out
    config.num_held_out = 5000  # never trained on: Bad GAN's threshold comes from them
    config.model = "made"  # or "pixelcnn"; docs/BAD_GAN.md measures both
    config.hidden_sizes = (1024, 1024)  # made
    config.filters = 160  # pixelcnn: as Bad GAN's PixelCNN(nr_resnet=3, disable_third=True)
    config.resnets = 3
    config.scales = 2
    config.mixtures = 5  # discretized logistics per pixel
    config.seed = 0
    config.batch_size = 100
    config.learning_rate = 1e-3
    config.num_steps = 30_000
    config.log_every = 500
    config.checkpoint_every = 5000
    return config
