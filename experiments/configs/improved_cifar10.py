"""The Improved-GAN feature-matching recipe on CIFAR-10 with 4,000 labels, as the reference runs it.

Salimans et al. 2016, openai/improved-gan `mnist_svhn_cifar10/train_cifar_feature_matching.py`
("cifar.py" below) and `nn.py`: 18.63 +- 2.32% test error with 4,000 labels. Each line cites the
line of cifar.py it follows. Not measured here (no machine here holds CIFAR-10); where it differs
on purpose the comment says so, and docs/IMPROVED_GAN.md lists every difference that remains.
"""

from experiments.configs import improved_mnist


def get_config():
    config = improved_mnist.get_config()  # the method, the EMA, the Adam and the loop's shape

    # Data.
    config.dataset = "cifar10"  # cifar10_data.load(args.data_dir, subset='train'/'test')
    config.num_labeled = 4000  # --count=400 per class, 10 classes
    config.label_selection = "balanced"  # trainx[trainy==j][:count] after rng_data.permutation
    config.num_validation = 1000  # not in cifar.py: held out to choose a checkpoint, never test
    config.labeled_sampling = "epoch"  # txs[rng.permutation(...)] tiled, one per pass
    config.unlabeled_sampling = "epoch"  # trainx_unl and trainx_unl2: two streams of passes
    config.image_range = "symmetric"  # pixels to [-1, 1]; the generator ends in T.tanh

    # Discriminator: disc_layers, with model="improved" on 32x32x3 images.
    config.model = "improved"
    config.weight_norm = True  # nn.weight_norm on every layer; hidden g frozen (train_g=False)
    config.d_conv_widths = (96, 192)  # Conv2DDNNLayer(..., 96, ...) x3, then 192 x3
    config.d_input_dropout = 0.2  # ll.DropoutLayer(disc_layers[-1], p=0.2)
    config.d_dropout = 0.5  # ll.DropoutLayer(disc_layers[-1], p=0.5) after each block
    config.d_input_noise = 0.0  # no Gaussian noise layers
    config.d_hidden_noise = 0.0
    config.init_batch_size = 500  # init_param(trainx[:500]), data-dependent init
    # Generator: gen_layers, z ~ theano_rng.uniform(size=(batch_size, 100)).
    config.z_distribution = "uniform"
    config.z_dim = 100

    # Losses.
    config.unlabeled_weight = 1.0  # --unlabeled_weight=1.
    config.feature_distance = "absolute"  # loss_gen = T.mean(abs(m1-m2))

    # Optimiser: nn.adam_updates(..., lr=lr, mom1=0.5), both networks.
    config.batch_size = 100  # --batch_size=100
    config.learning_rate = 3e-4  # --learning_rate=0.0003
    # range(1200) epochs of nr_batches_train = 50000 / 100 = 500 steps.
    config.num_iterations = 1200 * 500
    # lr * min(3 - epoch/400, 1): constant for 800 epochs, then down to 0 over the last 400.
    config.lr_decay_start = 800 / 1200

    # Evaluation: test_batch(..., givens=disc_avg_givens), the averaged weights, as in MNIST.
    config.ema_decay = 0.9999  # a + 0.0001 * (p - a)

    # Supervised baseline (not in cifar.py): the same discriminator on the 4,000 labels alone.
    config.supervised_epochs = 100  # 4,000 steps of 100
    config.supervised_ema_decay = 0.99

    # Loop: an epoch is 500 steps.
    config.log_every = 500
    config.eval_every = 5000
    config.sample_every = 10000
    config.checkpoint_every = 5000
    return config
