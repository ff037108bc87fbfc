"""Checks a training config before anything is written, naming the offending key."""

import ml_collections

from sgan_jax import conv, models, sampling
from sgan_jax.errors import ConfigError

LABEL_SELECTIONS = ("first", "balanced")
Z_DISTRIBUTIONS = ("normal", "uniform")
GENERATOR_LOSSES = ("non_saturating", "feature_matching")
# jax_default_matmul_precision's values.
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")

_CHOICES = {
    "label_selection": LABEL_SELECTIONS,
    "labeled_sampling": sampling.SAMPLINGS,
    "unlabeled_sampling": sampling.SAMPLINGS,
    "model": models.MODELS,
    "image_range": tuple(models.IMAGE_RANGES),
    "z_distribution": Z_DISTRIBUTIONS,
    "generator_loss": GENERATOR_LOSSES,
    "conv_impl": conv.IMPLS,
    "matmul_precision": MATMUL_PRECISIONS,
}
_POSITIVE = ("num_labeled", "batch_size", "z_dim", "learning_rate", "eval_batch_size")
_NON_NEGATIVE = (
    "num_iterations",
    "num_validation",
    "test_examples",
    "supervised_epochs",
    "log_every",
    "eval_every",
    "sample_every",
    "checkpoint_every",
    "init_batch_size",
    "early_stopping_patience",
    "steps_per_dispatch",
    "num_devices",
    "unlabeled_weight",
    "adam_eps",
    "adam_eps_root",
)
_PROBABILITIES = (
    "d_dropout",
    "d_input_dropout",
    "adam_b1",
    "adam_b2",
    "ema_decay",
    "supervised_ema_decay",
)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Checks what can be checked without the data."""
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ConfigError("dataset", "must name a tfds dataset")
    for key, choices in _CHOICES.items():
        if config[key] not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}; got {config[key]!r}")
    for key in _POSITIVE:
        if not config[key] > 0:
            raise ConfigError(key, f"must be > 0; got {config[key]}")
    for key in _NON_NEGATIVE:
        if not config[key] >= 0:
            raise ConfigError(key, f"must be >= 0; got {config[key]}")
    for key in _PROBABILITIES:
        if not 0 <= config[key] < 1:
            raise ConfigError(key, f"must be in [0, 1); got {config[key]}")
    if config.generator_learning_rate is not None and not config.generator_learning_rate > 0:
        raise ConfigError("generator_learning_rate", "must be > 0 (or unset)")
    if not 0 <= config.lr_decay_start <= 1:
        raise ConfigError("lr_decay_start", f"must be in [0, 1]; got {config.lr_decay_start}")
    if config.keep_checkpoints < 1:
        raise ConfigError("keep_checkpoints", f"must be >= 1; got {config.keep_checkpoints}")
    if config.early_stopping_patience and not config.num_validation:
        raise ConfigError("early_stopping_patience", "needs num_validation > 0")
    if config.early_stopping_patience and not config.eval_every:
        raise ConfigError("early_stopping_patience", "needs eval_every > 0")


def check_config_against_data(config, num_train: int, num_classes: int, num_devices: int) -> None:
    """Checks what depends on the dataset and the devices."""
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
    if config.batch_size % num_devices:
        raise ConfigError(
            "batch_size", f"{config.batch_size} is not divisible by the {num_devices} devices"
        )
