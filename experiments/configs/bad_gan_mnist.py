"""Bad GAN on MNIST with 100 labels (Dai et al. 2017; kimiyoung/ssl_bad_gan `mnist_trainer.py`,
`mnist_model.py` and `config.py`, cited line by line below), on our CPU schedule.

The density model is ours: `python experiments/train_density.py --workdir=runs/density_mnist`,
then `--config.density_path=runs/density_mnist`. The schedule is 180,000 iterations, flat for
two thirds and then linearly to 0, the shape of the original's 2,000 epochs (about 1.2 million
iterations, one seventh of which fits a CPU here); docs/BAD_GAN.md lists every difference.
"""

from experiments.configs import improved_mnist
from sgan_jax.training import config as config_lib


def get_config():
    config = improved_mnist.get_config()  # the MLP D with noise, the MLP G, feature matching
    config_lib.set_method(config, "bad_gan")
    config.density_path = "runs/density_mnist"
    config.ld_weight = 1e-4  # p_loss_weight = 1e-4
    config.ld_start = 9000  # if iter > 9000
    config.ld_probability = 0.1  # random.random() < config.p_loss_prob (0.1)
    config.ld_batch = 30  # torch.Tensor(30, config.noise_size)
    config.ld_quantile = 0.1  # cut_point = int(log_probs.shape[0] * 0.1)

    # G: nn.Linear(.., 500, bias=False), nn.BatchNorm1d(500), nn.Softplus() twice: PyTorch's
    # batch norm learns a scale and a bias, eps 1e-5 (Improved-GAN's: a bias only, eps 1e-6).
    config.generator_bn_scale = True
    config.generator_bn_epsilon = 1e-5

    # Optimisers: optim.Adam(dis, lr=dis_lr, betas=(0.5, 0.9999)), optim.Adam(gen, lr=gen_lr,
    # betas=(0.0, 0.9999)); PyTorch's Adam adds eps = 1e-8 outside the square root.
    config.learning_rate = 3e-3  # dis_lr = 3e-3
    config.generator_learning_rate = 1e-3  # gen_lr = 1e-3
    config.adam_b1, config.adam_b2 = 0.5, 0.9999
    config.generator_adam_b1, config.generator_adam_b2 = 0.0, 0.9999
    config.adam_eps, config.adam_eps_root = 1e-8, 0.0

    # lr * max(0, min(3 * (1 - epoch / max_epochs), 1)): flat for 2/3, then linearly to 0.
    config.num_iterations = 180_000  # max_epochs = 2000 (x 600) in the original: 1/7 of it
    config.lr_decay_start = 2 / 3

    # Evaluation: mnist_trainer.py's eval() reads self.dis itself, no average of its weights.
    config.ema_decay = 0.0
    return config
