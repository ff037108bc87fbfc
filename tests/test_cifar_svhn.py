"""The Improved-GAN CIFAR-10 and SVHN recipes (improved_cifar10.py, improved_svhn.py) against
the reference code (openai/improved-gan's train_cifar_feature_matching.py,
train_svhn_feature_matching.py and nn.py): the networks' size counted by hand, a
weight-normalised block and the feature-matching loss computed as the scripts compute them, and
20 iterations through the real CLI on a generated dataset in tfds's format (no machine here
holds CIFAR-10 or SVHN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from sgan_jax.methods import losses
from sgan_jax.nets import layers, models
from sgan_jax.training import config as config_lib
from sgan_jax.training import state as state_lib

from .conftest import cli_env, load_config, read_results, read_rows, run_train


def _params(config):
    """The networks' parameters as create_train_state makes them, by shape only (nothing is
    computed: jax.eval_shape)."""
    generator, discriminator = models.create_models(config, (32, 32, 3), 10)
    images = jnp.zeros((8, 32, 32, 3))
    pools = {"labeled": 100, "unlabeled": 1000}
    state = jax.eval_shape(
        lambda x: state_lib.create_train_state(config, generator, discriminator, x, pools), images
    )
    return state.generator.params, state.discriminator.params


def _count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name,a,b", [("improved_cifar10", 96, 192), ("improved_svhn", 64, 128)])
def test_parameter_counts_are_the_reference_scripts(name, a, b):
    """Counted from disc_layers and gen_layers: a weight-normalised layer holds its kernel V, its
    scale g (frozen in hidden layers, but a parameter) and its bias b; nn.batch_norm drops the
    layer's bias for its own b and, with g=None, no scale (its running averages, never read by
    a generator that always runs in training mode, are not counted)."""
    config = load_config(name)
    config_lib.check_config(config)
    generator, discriminator = _params(config)
    conv3x3 = 3 * 3
    reference_d = (
        (conv3x3 * 3 * a + 2 * a)  # Conv2DDNNLayer(3 -> a), pad=1
        + 2 * (conv3x3 * a * a + 2 * a)  # a -> a, then a -> a with stride 2
        + (conv3x3 * a * b + 2 * b)  # a -> b
        + 2 * (conv3x3 * b * b + 2 * b)  # b -> b, then stride 2
        + (conv3x3 * b * b + 2 * b)  # b -> b, pad=0
        + 2 * (b * b + 2 * b)  # two NINLayer(b)
        + (b * 10 + 2 * 10)  # DenseLayer(10), train_g=True
    )
    reference_g = (
        (100 * 4 * 4 * 512 + 4 * 4 * 512)  # DenseLayer(4*4*512) + batch norm's b
        + (5 * 5 * 512 * 256 + 256)  # Deconv2DLayer(256, 8x8) + b
        + (5 * 5 * 256 * 128 + 128)  # Deconv2DLayer(128, 16x16) + b
        + (5 * 5 * 128 * 3 + 2 * 3)  # weight-normalised Deconv2DLayer(3, 32x32): V, g, b
    )
    assert _count(discriminator) == reference_d
    assert _count(generator) == reference_g == 4_933_382


def _theano_weight_norm_conv(x_nchw, v_oihw, g, b, stride, pad):
    """nn.weight_norm(dnn.Conv2DDNNLayer(..., pad, stride, nonlinearity=nn.lrelu)) in numpy:
    W = V * g / sqrt(1e-6 + sum(V^2 over in, h, w)), a cross-correlation (Lasagne's dnn layer
    does not flip), + b, then max(x, 0.2 x)."""
    w = v_oihw * (g / np.sqrt(1e-6 + np.sum(v_oihw**2, axis=(1, 2, 3))))[:, None, None, None]
    x = np.pad(x_nchw, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_c, _, kh, kw = w.shape
    n, _, height, width = x.shape
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    y = np.zeros((n, out_c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    y += b[None, :, None, None]
    return np.maximum(y, 0.2 * y)


@pytest.mark.parametrize("impl", ["matmul", "xla"])
def test_a_strided_weight_norm_block_is_the_reference_maths_with_its_scale_frozen(impl):
    """The discriminator's third convolution (stride 2, Theano's pad=1 on both sides), against
    nn.py's maths in numpy; its scale gets no gradient, its bias and direction do."""
    block = layers.WeightNormConv(
        8,
        kernel_size=(3, 3),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
        train_scale=False,
        norm_epsilon=1e-6,
        impl=impl,
    )
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 5))
    params = block.init(jax.random.key(1), x)["params"]
    params = {**params, "scale": params["scale"] * 1.7, "bias": params["bias"] + 0.3}
    ours = models.leaky_relu(block.apply({"params": params}, x))
    reference = _theano_weight_norm_conv(
        np.asarray(x, np.float64).transpose(0, 3, 1, 2),
        np.asarray(params["kernel"], np.float64).transpose(3, 2, 0, 1),
        np.asarray(params["scale"], np.float64),
        np.asarray(params["bias"], np.float64),
        stride=2,
        pad=1,
    )
    assert ours.shape == (2, 16, 16, 8)
    np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), reference, atol=2e-5)
    grads = jax.grad(lambda p: jnp.sum(block.apply({"params": p}, x) ** 2))(params)
    assert float(jnp.abs(grads["scale"]).max()) == 0.0
    assert float(jnp.abs(grads["bias"]).max()) > 0 and float(jnp.abs(grads["kernel"]).max()) > 0


def test_feature_matching_is_the_mean_absolute_difference_of_mean_features():
    """cifar.py and svhn.py: loss_gen = T.mean(abs(m1 - m2)) over the global-pool features."""
    real = np.random.default_rng(0).normal(size=(100, 192))
    fake = np.random.default_rng(1).normal(size=(100, 192))
    expected = np.mean(np.abs(real.mean(axis=0) - fake.mean(axis=0)))
    got = losses.feature_matching_loss(jnp.asarray(real), jnp.asarray(fake), "absolute")
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert load_config("improved_cifar10").feature_distance == "absolute"
    assert load_config("improved_svhn").feature_distance == "absolute"
    assert load_config("improved_mnist").feature_distance == "squared"


def test_the_schedules_are_the_scripts():
    """lr * min(3 - epoch/400, 1) over 1,200 epochs of 500 (CIFAR-10), min(3 - epoch/300, 1)
    over 900 of 732 (SVHN): constant for two thirds, then linearly down to 0."""
    for name, epochs, steps in (("improved_cifar10", 1200, 500), ("improved_svhn", 900, 732)):
        config = load_config(name)
        assert config.num_iterations == epochs * steps and config.learning_rate == 3e-4
        schedule = state_lib.learning_rate_schedule(config, config.learning_rate)
        flat_until = 2 * epochs // 3 * steps
        assert schedule(flat_until) == pytest.approx(3e-4)
        last_epoch = (epochs - 1) * steps  # the script's last epoch: lr * (3 - (E-1)/(E/3))
        assert schedule(last_epoch) == pytest.approx(3e-4 * 3 / epochs, rel=1e-3)


class Random32x32(tfds.core.GeneratorBasedBuilder):
    """Random 32x32x3 images with 10 balanced labels, prepared in tfds's format like CIFAR-10."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self, features=features, supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(300, 0), "test": self._generate_examples(100, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for i in range(count):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            yield i, {"image": image, "label": i % 10}


@pytest.fixture(scope="module")
def generated_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("random32x32")
    Random32x32(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


def test_cifar10_recipe_trains_and_evaluates_through_the_cli(generated_data_dir, tmp_path):
    """The recipe as a user runs it, on a dataset tfds reads from files by name; the sizes
    shrink to fit CI (20 iterations of 20), the networks and losses stay the recipe's."""
    workdir = tmp_path / "run"
    run_train(
        workdir,
        f"--config.dataset={Random32x32.name}",
        f"--config.data_dir={generated_data_dir}",
        "--config.num_labeled=100",
        "--config.num_validation=50",
        "--config.test_examples=0",
        "--config.batch_size=20",
        "--config.init_batch_size=100",
        "--config.eval_batch_size=100",
        "--config.eval_every=20",
        "--config.sample_every=20",
        "--config.checkpoint_every=20",
        "--config.supervised_epochs=0",  # the baseline's selection is tested with the sweeps
        config_file="improved_cifar10.py",
        env=cli_env(SGAN_MANUAL_DIR=""),  # nothing to prepare: the dataset is on disk
    )
    results = read_results(workdir)
    assert results["dataset"] == "random32x32" and results["final_step"] == 20
    assert results["params"]["discriminator"] == 1_408_244
    assert 0 <= results["test_accuracy"] <= 1 and results["best_validation_step"] == 20
    logged = [r for r in read_rows(workdir) if "g_loss" in r]
    assert len(logged) == 4 and all(np.isfinite(r["g_loss"]) for r in logged)
