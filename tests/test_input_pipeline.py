"""Datasets from tfds (real MNIST, mock CIFAR-10 / SVHN) and the label selection."""

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs.errors import ConfigError

from .conftest import MANUAL_DIR, REPO


def test_mnist_from_the_original_files(mnist):
    assert mnist.train_images.shape == (60000, 28, 28, 1)
    assert mnist.test_images.shape == (10000, 28, 28, 1)
    assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.int32
    assert mnist.num_classes == 10 and mnist.image_shape == (28, 28, 1)
    assert np.bincount(mnist.train_labels, minlength=10).sum() == 60000
    assert 0 < mnist.train_images.mean() < 255
    # tfds' train order is not the files' order: its first 100 images have these class counts
    # (13,14,6,11,11,5,11,10,8,11 in the original order the Keras tutorial uses).
    assert np.bincount(mnist.train_labels[:100], minlength=10).tolist() == [
        6,
        15,
        6,
        9,
        19,
        6,
        10,
        12,
        7,
        10,
    ]


LOAD = """
import sys, zlib
from sgan_jax.data import input_pipeline
data = input_pipeline.load_dataset("mnist", sys.argv[1], sys.argv[2])
print(zlib.crc32(data.train_images.tobytes()), zlib.crc32(data.test_labels.tobytes()))
"""


def test_processes_preparing_one_data_dir_at_once_all_load_it(mnist, tmp_path):
    """As sweep --jobs or shards do on a fresh machine: before the lock, the second process to
    finish preparing crashed renaming its copy onto the first's."""
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(tmp_path), os.path.abspath(MANUAL_DIR)],
            env=dict(os.environ, PYTHONPATH=REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [loader.communicate(timeout=600) for loader in loaders]
    for loader, (_, err) in zip(loaders, outputs, strict=True):
        assert loader.returncode == 0, err[-3000:]
    expected = (
        f"{zlib.crc32(mnist.train_images.tobytes())} {zlib.crc32(mnist.test_labels.tobytes())}"
    )
    assert [out.splitlines()[-1] for out, _ in outputs] == [expected] * 2


def test_test_examples_keep_the_first_test_images(mnist):
    subset = input_pipeline.first_test_examples(mnist, 2000)
    np.testing.assert_array_equal(subset.test_images, mnist.test_images[:2000])
    np.testing.assert_array_equal(subset.test_labels, mnist.test_labels[:2000])
    assert subset.train_images is mnist.train_images
    assert input_pipeline.first_test_examples(mnist, 0) is mnist
    with pytest.raises(ConfigError, match="test_examples"):
        input_pipeline.first_test_examples(mnist, 10001)


def test_scaling():
    pixels = np.array([0, 127, 255], np.uint8)
    np.testing.assert_allclose(
        input_pipeline.scale_images(pixels, "symmetric"), [-1.0, 127 / 127.5 - 1, 1.0]
    )
    np.testing.assert_allclose(input_pipeline.scale_images(pixels, "unit"), [0, 127 / 255, 1])


def test_first_selection(mnist):
    split = input_pipeline.select_labels(mnist.train_labels, 100, "first", 10, data_seed=0)
    np.testing.assert_array_equal(split.labeled, np.arange(100))
    np.testing.assert_array_equal(split.unlabeled, np.arange(100, 60000))
    assert len(split.validation) == 0


def test_balanced_selection_is_per_class_and_seeded(mnist):
    labels = mnist.train_labels
    a = input_pipeline.select_labels(labels, 100, "balanced", 10, data_seed=0, num_validation=500)
    b = input_pipeline.select_labels(labels, 100, "balanced", 10, data_seed=0, num_validation=500)
    c = input_pipeline.select_labels(labels, 100, "balanced", 10, data_seed=1, num_validation=500)
    assert np.bincount(labels[a.labeled], minlength=10).tolist() == [10] * 10
    for x, y in zip(
        (a.labeled, a.unlabeled, a.validation), (b.labeled, b.unlabeled, b.validation), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.labeled, c.labeled)
    assert not np.array_equal(a.validation, c.validation)
    for split in (a, c):
        sets = [set(split.labeled), set(split.unlabeled), set(split.validation)]
        assert len(sets[2]) == 500
        assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
        assert len(sets[0]) + len(sets[1]) + len(sets[2]) == 60000


def test_every_label_makes_the_labeled_set_the_unlabeled_pool(mnist):
    split = input_pipeline.select_labels(mnist.train_labels, 60000, "balanced", 10, data_seed=0)
    np.testing.assert_array_equal(split.labeled, np.arange(60000))
    np.testing.assert_array_equal(split.unlabeled, split.labeled)


def test_balanced_needs_enough_images_per_class(mnist):
    with pytest.raises(ConfigError, match="num_labeled"):
        input_pipeline.select_labels(mnist.train_labels, 59990, "balanced", 10, data_seed=0)


def test_unknown_dataset_and_unsupported_shape(tmp_path):
    with pytest.raises(ConfigError, match="dataset: 'no_such_dataset' is not a tfds dataset"):
        input_pipeline.load_dataset("no_such_dataset", str(tmp_path))
    with pytest.raises(ConfigError, match="96, 96, 3"):
        input_pipeline.load_dataset("stl10", str(tmp_path), image_shapes=models.SUPPORTED_SHAPES)


@pytest.mark.parametrize("name", ["cifar10", "svhn_cropped"])
def test_32x32x3_datasets_through_tfds_mock_data(name, tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        dataset = input_pipeline.load_dataset(name, str(tmp_path))
    assert dataset.image_shape == (32, 32, 3)
    assert dataset.train_images.shape == (64, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.num_classes == 10
    assert dataset.train_labels.min() >= 0 and dataset.train_labels.max() < 10


def test_a_download_without_network_is_one_line_naming_manual_dir(tmp_path, monkeypatch):
    """tfds's real download path, with the network's answer replaced by the failure a machine
    without internet gets (requests' ConnectionError, as seen on these machines after urllib3's
    retries): a one-line error naming manual_dir and what to put there, not a traceback."""
    import requests

    def no_network(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", no_network)
    with pytest.raises(ConfigError) as raised:
        input_pipeline.load_dataset("cifar10", str(tmp_path))
    message = str(raised.value)
    assert message.startswith("manual_dir: cifar10 could not be downloaded (ConnectionError)")
    assert "SGAN_MANUAL_DIR" in message and "\n" not in message
