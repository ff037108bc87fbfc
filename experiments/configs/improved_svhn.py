"""The Improved-GAN feature-matching recipe on SVHN with 1,000 labels, as the reference runs it.

Salimans et al. 2016, openai/improved-gan `mnist_svhn_cifar10/train_svhn_feature_matching.py`
("svhn.py" below): 8.11 +- 1.3% test error with 1,000 labels. The CIFAR-10 recipe
(improved_cifar10.py) but for the lines below, each citing the line of svhn.py it follows. Not
measured here (no machine here holds SVHN); docs/IMPROVED_GAN.md lists the differences that
remain.
"""

from experiments.configs import improved_cifar10


def get_config():
    config = improved_cifar10.get_config()
    # svhn_data.load(args.data_dir, 'train'): the 73,257 training images, not the "extra" split.
    config.dataset = "svhn_cropped"
    config.num_labeled = 1000  # --count=100 per class
    # rescale(mat): (-127.5 + mat) / 127.5, the same [-1, 1] as image_range="symmetric".
    config.d_conv_widths = (64, 128)  # Conv2DDNNLayer(..., 64, ...) x3, then 128 x3
    # range(900) epochs of nr_batches_train = int(73257 / 100) = 732 steps.
    config.num_iterations = 900 * 732
    # lr * min(3 - epoch/300, 1): constant for 600 epochs, then down to 0 over the last 300.
    config.lr_decay_start = 600 / 900
    config.supervised_epochs = 300  # not in svhn.py: 3,000 steps of 100 on the 1,000 labels
    config.log_every = 732
    config.eval_every = 7320
    config.sample_every = 14640
    config.checkpoint_every = 7320
    return config
