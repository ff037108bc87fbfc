"""Bad GAN on MNIST (Dai et al., NeurIPS 2017, "Good Semi-supervised Learning That Requires a Bad
GAN"; kimiyoung/ssl_bad_gan `mnist_trainer.py`): Improved-GAN feature matching plus the
low-density (LD) term, which pushes the generator away from where a density model of the real
images puts its mass, so that it makes "bad" samples in the gaps between the classes:

    after iteration 9,000, with probability 0.1: 30 fresh generated images x_i;
    p_i = max(log p(x_i) - tau, 0);  LD = 1e-4 * sum(p_i) / #{p_i > 0}  (0 when none)

with tau the 10th percentile of the density's log-probabilities of held-out real images. The
density model is ours (experiments/train_density.py): the run loads it by `density_path` and
takes tau from the training images that model never saw, never from test (the original took it
from the test set).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax.data.input_pipeline import IMAGE_RANGES
from sgan_jax.methods import base, improved_gan
from sgan_jax.nets import density as density_nets
from sgan_jax.runs import metrics
from sgan_jax.runs.errors import ConfigError


def low_density_loss(log_probs, threshold, weight):
    """The LD term of mnist_trainer.py: the mean of max(log p - tau, 0) over the images where it
    is positive, times `weight`; 0 when no image is above the threshold."""
    excess = jnp.maximum(log_probs - threshold, 0.0)
    count = jnp.sum(excess > 0)
    return jnp.where(count > 0, weight * jnp.sum(excess) / jnp.maximum(count, 1), 0.0)


def load_density(path: str, dataset: str):
    """(params, info, held-out indices) of a train_density.py workdir, refused in one line when
    missing or made for another dataset or pixel range."""
    files = density_nets.density_files(path)
    missing = [f for f in files if not os.path.exists(f)]
    if not path or missing:
        raise ConfigError(
            "density_path",
            f"no density model at {path!r} (missing {', '.join(map(os.path.basename, missing))}); "
            "train one: python experiments/train_density.py --workdir=DIR",
        )
    info = metrics.read_json(files[1])
    if info.get("dataset") != dataset:
        raise ConfigError(
            "density_path", f"{path} models {info.get('dataset')!r}, not this run's {dataset!r}"
        )
    if info.get("image_range") != "symmetric" or info.get("levels") != 256:
        raise ConfigError(
            "density_path",
            f"{path} models pixels of range {info.get('image_range')!r} with "
            f"{info.get('levels')} levels; this code reads [-1, 1] ('symmetric') with 256",
        )
    return density_nets.read_params(files[0]), info, np.load(files[2])


def threshold(params, images, quantile: float) -> float:
    """tau: the `quantile` of the density's log-probabilities of uint8 `images`, as
    mnist_trainer.py picks it (np.partition at int(N * quantile))."""
    model = density_nets.model_from_params(params)
    log_probs = density_nets.image_log_probs(model, params, images)
    cut = int(len(log_probs) * quantile)
    return float(np.partition(log_probs, cut)[cut])


def _linear(grads, params):
    """0, whose gradient with respect to `params` is `grads`: a gradient taken elsewhere, added
    to the objective's."""
    products = jax.tree.map(lambda g, p: jnp.vdot(g, p - jax.lax.stop_gradient(p)), grads, params)
    return sum(jax.tree.leaves(products))


class BadGAN(improved_gan.ImprovedGAN):
    name = "bad_gan"
    config_defaults = dict(
        **improved_gan.ImprovedGAN.config_defaults,
        density_path="",  # a train_density.py workdir
        ld_weight=1e-4,  # p_loss_weight
        ld_start=9000,  # iter > 9000
        ld_probability=0.1,  # p_loss_prob
        ld_batch=30,  # torch.Tensor(30, noise_size)
        ld_quantile=0.1,  # cut_point = int(N * 0.1)
    )
    config_help = dict(
        **improved_gan.ImprovedGAN.config_help,
        density_path="the train_density.py workdir whose density model the LD term reads",
        ld_weight="the LD term's weight",
        ld_start="iterations before the LD term starts",
        ld_probability="the chance that an iteration applies the LD term",
        ld_batch="generated images the LD term scores",
        ld_quantile="tau is this quantile of the density's log p of held-out training images",
    )
    metric_names = (*improved_gan.ImprovedGAN.metric_names, "g_loss_low_density")
    log_line = (*improved_gan.ImprovedGAN.log_line, "g_loss_low_density")

    def check_config(self, config) -> None:
        super().check_config(config)
        base.check_non_negative(config, "ld_weight", "ld_start")
        if not 0 <= config.ld_probability <= 1:
            raise ConfigError("ld_probability", f"must be in [0, 1]; got {config.ld_probability}")
        if not 0 < config.ld_quantile < 1:
            raise ConfigError("ld_quantile", f"must be in (0, 1); got {config.ld_quantile}")
        if not config.ld_batch > 0:
            raise ConfigError("ld_batch", f"must be > 0; got {config.ld_batch}")

    def method_data(self, config, dataset, split) -> dict:
        params, _, held_out = load_density(config.density_path, config.dataset)
        tau = threshold(params, dataset.train_images[held_out], config.ld_quantile)
        return {"density": params, "tau": np.float32(tau)}

    def describe_data(self, method_data: dict) -> dict:
        return {"ld_threshold": float(method_data["tau"])}

    def generator_loss(self, config, nets, g_params, d_params, extra, z_key, key, context=None):
        loss, metrics_ = super().generator_loss(
            config, nets, g_params, d_params, extra, z_key, key, context
        )
        coin_key, ld_z_key = jax.random.split(jax.random.fold_in(key, 7))
        active = (context.step > config.ld_start) & (
            jax.random.uniform(coin_key) < config.ld_probability
        )
        # Nine iterations in ten skip the density model: a branch taken when any seed's coin
        # says so, masked per seed. The branch takes its own gradient, and the cond is not
        # differentiated: through it, JAX carried the density's masked weights and activations
        # out of the cond for the backward pass and zero-filled them in every skipped iteration.
        value, grads = jax.lax.cond(
            context.any_seed(active),
            jax.value_and_grad(
                functools.partial(self._low_density, config, nets, context.method_data, ld_z_key)
            ),
            lambda params: (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params)),
            jax.lax.stop_gradient(g_params),
        )
        value = jnp.where(active, value, 0.0)
        grads = jax.tree.map(lambda grad: jnp.where(active, grad, 0.0), grads)
        return loss + value + _linear(grads, g_params), dict(metrics_, g_loss_low_density=value)

    @staticmethod
    def _low_density(config, nets, method_data, z_key, g_params):
        images = nets.generate(g_params, z_key, config.ld_batch)
        low, high = IMAGE_RANGES[config.image_range]
        pixels = 2 * (images - low) / (high - low) - 1  # the density's [-1, 1]
        model = density_nets.model_from_params(method_data["density"])
        log_probs = model.apply(method_data["density"], pixels.reshape(config.ld_batch, -1))
        return low_density_loss(log_probs, method_data["tau"], config.ld_weight)


METHOD = BadGAN()
