"""Datasets from tfds, loaded once into memory, and the labeled / unlabeled / validation split.

Training batches are not produced here: the jitted step samples them on the device from index
arrays (`device_data`), so no Python or tf.data work runs per step.
"""

import contextlib
import dataclasses
import fcntl
import os

import numpy as np
from absl import logging

from sgan_jax.data import sampling
from sgan_jax.runs import errors, sharding
from sgan_jax.runs.errors import ConfigError

# Decoded arrays are cached beside tfds' own files: tfds decodes every image with PIL on each
# read, 5 s for MNIST on these CPUs, where the cache loads in a fraction of a second.
_CACHE_NAME = "sgan_jax_arrays.npz"

LABEL_SELECTIONS = ("first", "balanced")
# Pixel values of each image range, as the networks see them.
IMAGE_RANGES = {"symmetric": (-1.0, 1.0), "unit": (0.0, 1.0)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    train_images: np.ndarray  # uint8, (N, H, W, C)
    train_labels: np.ndarray  # int32, (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


@dataclasses.dataclass(frozen=True)
class LabelSplit:
    """Indices into the training set; the three sets are disjoint (unless every image is
    labeled, when the labeled images are also the unlabeled pool)."""

    labeled: np.ndarray
    unlabeled: np.ndarray
    validation: np.ndarray

    @property
    def pool_sizes(self) -> dict[str, int]:
        """The sizes of the pools training batches are drawn from."""
        return {"labeled": len(self.labeled), "unlabeled": len(self.unlabeled)}


def resolve_dirs(config) -> tuple[str | None, str | None]:
    """(tfds data_dir, manual_dir) from the config, falling back to the environment."""
    data_dir = config.data_dir or os.environ.get("TFDS_DATA_DIR") or None
    manual_dir = config.manual_dir or os.environ.get("SGAN_MANUAL_DIR") or None
    return data_dir, manual_dir


def _builder(name: str, data_dir: str | None):
    # Imported here: the benchmark and the models need no tfds (nor do GPU hosts without it).
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError("dataset", f"{name!r} is not a tfds dataset") from None


def check_config(config) -> None:
    """Checks the data keys that need no data; raises ConfigError naming the key."""
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ConfigError("dataset", "must name a tfds dataset")
    choices = dict(
        label_selection=LABEL_SELECTIONS,
        labeled_sampling=sampling.SAMPLINGS,
        unlabeled_sampling=sampling.SAMPLINGS,
        image_range=tuple(IMAGE_RANGES),
    )
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {config[key]!r}")
    if not config.num_labeled > 0:
        raise ConfigError("num_labeled", f"must be > 0; got {config.num_labeled}")
    for key in ("num_validation", "test_examples"):
        if not config[key] >= 0:
            raise ConfigError(key, f"must be >= 0; got {config[key]}")


def check_split(config, num_train: int, num_classes: int) -> None:
    """Checks the label budget and the validation split against the dataset."""
    if config.num_labeled > num_train:
        raise ConfigError(
            "num_labeled", f"{config.num_labeled} is more than the {num_train} training images"
        )
    if config.num_labeled + config.num_validation > num_train:
        raise ConfigError(
            "num_validation",
            f"num_labeled + num_validation = {config.num_labeled + config.num_validation} is "
            f"more than the {num_train} training images",
        )
    if config.label_selection == "balanced" and config.num_labeled % num_classes:
        raise ConfigError(
            "num_labeled",
            f"{config.num_labeled} is not divisible by the {num_classes} classes "
            "(label_selection=balanced)",
        )


def _check_features(builder, image_shapes) -> None:
    name = builder.name
    if builder.info.supervised_keys is None:
        raise ConfigError("dataset", f"{name!r} has no (image, label) supervised keys")
    image_key, label_key = builder.info.supervised_keys
    features = builder.info.features
    shape = tuple(features[image_key].shape)
    if image_shapes is not None and shape not in image_shapes:
        supported = " or ".join("x".join(map(str, s)) for s in image_shapes)
        raise ConfigError(
            "dataset", f"{name!r} has images of shape {shape}; supported: {supported}"
        )
    if not hasattr(features[label_key], "num_classes"):
        raise ConfigError("dataset", f"{name!r} has no class labels")


def _check_manual_files(builder, manual_dir: str) -> str:
    """The dataset's subfolder of manual_dir, after checking that every file it needs is there."""
    folder = os.path.join(manual_dir, builder.name)
    for url_info in (builder.url_infos or {}).values():
        path = os.path.join(folder, url_info.filename)
        if not os.path.exists(path):
            raise ConfigError("manual_dir", f"missing {path} (needed to prepare {builder.name})")
    return folder


def _prepare(builder, data_dir: str | None, manual_dir: str | None) -> None:
    """Builds the dataset; offline from manual_dir when one is given."""
    manual_folder = _check_manual_files(builder, manual_dir) if manual_dir else None
    # Preparing needs TensorFlow. Keep it off the GPUs, or it takes their memory from JAX.
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    root = data_dir or os.path.expanduser("~/tensorflow_datasets")
    # tfds caches downloads by file name, and e.g. MNIST and Fashion-MNIST share file names.
    download_dir = os.path.join(root, "downloads", builder.name)
    logging.info("Preparing %s in %s", builder.name, root)
    try:
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_folder, try_download_gcs=False
            ),
        )
    except OSError as error:  # requests' ConnectionError is one: no network, after retries
        if manual_folder or errors.no_space(error):
            raise
        raise ConfigError(
            "manual_dir",
            f"{builder.name} could not be downloaded ({type(error).__name__}); without internet, "
            f"set SGAN_MANUAL_DIR (or --config.manual_dir) to a folder holding "
            f"{builder.name}/ with its original files",
        ) from None


@contextlib.contextmanager
def _exclusive(lock_path: str):
    """Holds an exclusive lock on lock_path. fcntl's: the kernel releases it if the holder dies,
    which a lock file's existence alone would not."""
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_key, label_key = builder.info.supervised_keys
    source = builder.as_data_source(split=split)
    keys = list(range(len(source)))
    try:
        examples = source.__getitems__(keys)  # one batched read: ~4x faster than item by item
    except TypeError:  # tfds.testing.mock_data's source mocks only item access
        examples = [source[key] for key in keys]
    images = np.stack([np.asarray(e[image_key], np.uint8) for e in examples])
    labels = np.asarray([e[label_key] for e in examples], np.int32)
    return images, labels


def load_dataset(
    name: str, data_dir: str | None = None, manual_dir: str | None = None, image_shapes=None
) -> Dataset:
    """Loads the train and test splits of a tfds image-classification dataset into memory;
    one whose images are of none of `image_shapes` (if given) is refused before it is built."""
    builder = _builder(name, data_dir)
    _check_features(builder, image_shapes)
    if not builder.is_prepared():
        # Processes that share a data_dir (sweep --jobs, shards) would each build it, and all
        # but the first crash renaming their copy into place: one builds while the rest wait.
        with _exclusive(os.path.dirname(os.path.dirname(builder.data_dir)) + ".prepare.lock"):
            builder = _builder(name, data_dir)  # reads what another process may have built
            if not builder.is_prepared():
                _prepare(builder, data_dir, manual_dir)
    num_classes = builder.info.features[builder.info.supervised_keys[1]].num_classes
    cache = os.path.join(builder.data_dir, _CACHE_NAME)
    if os.path.exists(cache):
        with np.load(cache) as arrays:
            return Dataset(name, **{k: arrays[k] for k in arrays.files}, num_classes=num_classes)
    splits = builder.info.splits
    if splits and not {"train", "test"} <= set(splits):
        raise ConfigError("dataset", f"{name!r} lacks a train or test split: {sorted(splits)}")
    train_images, train_labels = _read_split(builder, "train")
    test_images, test_labels = _read_split(builder, "test")
    arrays = dict(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
    )
    if os.path.isdir(builder.data_dir) and os.access(builder.data_dir, os.W_OK):
        tmp = cache + f".tmp{os.getpid()}.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, cache)
    return Dataset(name, **arrays, num_classes=num_classes)


def select_labels(
    labels: np.ndarray,
    num_labeled: int,
    selection: str,
    num_classes: int,
    data_seed: int,
    num_validation: int = 0,
) -> LabelSplit:
    """Chooses the labeled images, the held-out validation images and the unlabeled pool.

    "first": the first `num_labeled` images, as in the tutorial. "balanced":
    `num_labeled / num_classes` of each class, drawn by `data_seed`. Validation images are
    drawn by `data_seed` from the rest; the unlabeled pool is what remains.
    """
    num_train = len(labels)
    rng = np.random.default_rng(data_seed)
    if selection == "first" or num_labeled == num_train:  # all labels: nothing to choose
        labeled = np.arange(num_labeled)
    elif selection == "balanced":
        per_class = num_labeled // num_classes
        chosen = []
        for c in range(num_classes):
            members = np.flatnonzero(labels == c)
            if len(members) < per_class:
                raise ConfigError(
                    "num_labeled", f"class {c} has {len(members)} images, fewer than {per_class}"
                )
            chosen.append(rng.choice(members, per_class, replace=False))
        labeled = np.sort(np.concatenate(chosen))
    else:
        raise ConfigError("label_selection", f"must be first or balanced; got {selection!r}")
    rest = np.setdiff1d(np.arange(num_train), labeled)
    validation = np.sort(rng.choice(rest, num_validation, replace=False))
    unlabeled = np.setdiff1d(rest, validation)
    if len(unlabeled) == 0:
        # Every training image is labeled: the labeled images are the unlabeled pool too.
        unlabeled = labeled
    return LabelSplit(
        labeled=labeled.astype(np.int32),
        unlabeled=unlabeled.astype(np.int32),
        validation=validation.astype(np.int32),
    )


def scale_images(images, image_range: str):
    """uint8 pixels to [-1, 1] ("symmetric") or [0, 1] ("unit"); works on numpy and jax arrays."""
    if image_range == "symmetric":
        return images.astype("float32") / 127.5 - 1.0
    return images.astype("float32") / 255.0


def device_data(dataset: Dataset, split: LabelSplit) -> dict[str, np.ndarray]:
    """What the jitted step samples its batches from (passed as an argument, never closed over:
    XLA would constant-fold a closed-over dataset, which compiles very slowly)."""
    return dict(
        images=dataset.train_images,
        labels=dataset.train_labels,
        labeled_idx=split.labeled,
        unlabeled_idx=split.unlabeled,
    )


def load_for_processes(config, image_shapes=None) -> Dataset:
    """The config's dataset; with several processes, process 0 prepares it while the rest wait.
    With `test_examples` > 0, only the test split's first that many examples are kept."""
    data_dir, manual_dir = resolve_dirs(config)
    if sharding.is_primary():
        dataset = load_dataset(config.dataset, data_dir, manual_dir, image_shapes)
    sharding.sync("sgan_jax:dataset")
    if not sharding.is_primary():
        dataset = load_dataset(config.dataset, data_dir, manual_dir, image_shapes)
    return first_test_examples(dataset, config.test_examples)


def first_test_examples(dataset: Dataset, count: int) -> Dataset:
    """The dataset with its test split cut to the first `count` examples (0: all of them)."""
    available = len(dataset.test_labels)
    if count > available:
        raise ConfigError("test_examples", f"{count} is more than the {available} test examples")
    if not count:
        return dataset
    return dataclasses.replace(
        dataset, test_images=dataset.test_images[:count], test_labels=dataset.test_labels[:count]
    )


def select_for_configs(configs, dataset: Dataset) -> list[LabelSplit]:
    """Each config's split, after checking the config against the data."""
    for c in configs:
        check_split(c, len(dataset.train_labels), dataset.num_classes)
    return [
        select_labels(
            dataset.train_labels,
            c.num_labeled,
            c.label_selection,
            dataset.num_classes,
            c.data_seed,
            c.num_validation,
        )
        for c in configs
    ]


def init_images(config, dataset: Dataset, split: LabelSplit) -> np.ndarray:
    """Real unlabeled images for the data-dependent initialisation, chosen by the seed."""
    count = config.init_batch_size or config.batch_size
    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(split.unlabeled, count, replace=count > len(split.unlabeled))
    return scale_images(dataset.train_images[chosen], config.image_range)
