"""The harness's config keys, with their defaults and help, and the checks of a whole config.

A run's config is these keys plus its method's own (`Method.config_defaults`). The defaults are
the tutorial's values, and a key added after runs were started defaults to what those runs did:
a saved config.json without the key is the same experiment, so its workdir keeps resuming.
docs/CONFIG.md is generated from the help texts here (`python -m sgan_jax.training.config`).
"""

import json
from typing import NamedTuple

import ml_collections
from ml_collections import config_dict

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs.errors import ConfigError


class _Unset(NamedTuple):
    """The default of a key that may be left unset (None), of this type when set."""

    kind: type


_UNSET_STR, _UNSET_FLOAT = _Unset(str), _Unset(float)

# (section, key, default, help), in the order of docs/CONFIG.md.
KEYS = (
    ("method", "method", "sgan", "which method trains: a module of sgan_jax/methods"),
    ("data", "dataset", "mnist", "tfds dataset name"),
    ("data", "data_dir", _UNSET_STR, "tfds' folder; unset: $TFDS_DATA_DIR, else tfds' default"),
    (
        "data",
        "manual_dir",
        _UNSET_STR,
        "folder of original files, one subfolder per dataset; "
        "unset: $SGAN_MANUAL_DIR, else tfds downloads",
    ),
    ("data", "num_labeled", 100, "labeled training images"),
    (
        "data",
        "label_selection",
        "first",
        "first: the first N images (the tutorial) | "
        "balanced: N/classes per class, drawn by data_seed",
    ),
    ("data", "num_validation", 0, "labeled images held out of training, for model selection"),
    ("data", "data_seed", 0, "which images are labeled (balanced) and held out"),
    ("data", "test_examples", 0, "evaluate on the test split's first N images; 0: all"),
    ("data", "labeled_sampling", "random", "random: uniform with replacement | epoch: passes"),
    ("data", "unlabeled_sampling", "random", "as labeled_sampling, for the unlabeled streams"),
    (
        "data",
        "image_range",
        "symmetric",
        "symmetric: pixels in [-1, 1], tanh generator | unit: [0, 1], sigmoid generator",
    ),
    ("nets", "model", "tutorial", "tutorial | improved (Salimans et al. 2016)"),
    ("nets", "z_dim", 100, "latent size"),
    ("nets", "z_distribution", "normal", "normal: N(0, 1) | uniform: U[0, 1)"),
    ("nets", "d_dropout", 0.4, "dropout in the discriminator"),
    ("nets", "d_input_dropout", 0.0, "dropout on the discriminator's input (conv model)"),
    ("nets", "d_input_noise", 0.0, "Gaussian noise on the discriminator's input (MLP)"),
    ("nets", "d_hidden_noise", 0.0, "Gaussian noise after each hidden layer (MLP)"),
    (
        "nets",
        "d_conv_widths",
        (96, 192),
        "the conv discriminator's two widths (32x32x3 images): CIFAR-10's; SVHN's are (64, 128)",
    ),
    ("nets", "weight_norm", False, "weight-normalised layers (improved model)"),
    ("nets", "generator_data_init", False, "data-dependent init of G's weight-normalised output"),
    (
        "nets",
        "generator_bn_scale",
        False,
        "G's MLP batch norm learns a scale too (PyTorch's affine BatchNorm1d); off: a bias only",
    ),
    ("nets", "generator_bn_epsilon", 1e-6, "epsilon of G's MLP batch norm"),
    ("nets", "init_batch_size", 0, "images for data-dependent init; 0: batch_size"),
    ("nets", "conv_impl", "auto", "auto | matmul (fast on CPU) | xla (lax convolutions)"),
    ("training", "seed", 0, "initialisation, noise, batch sampling"),
    ("training", "batch_size", 32, "images per batch, of each kind"),
    ("training", "num_iterations", 20_000, "training iterations"),
    (
        "training",
        "learning_rate",
        2e-4,
        "Adam's rate (the discriminator's, and the generator's "
        "unless generator_learning_rate is set)",
    ),
    (
        "training",
        "generator_learning_rate",
        _UNSET_FLOAT,
        "the generator's rate; unset: learning_rate",
    ),
    (
        "training",
        "lr_decay_start",
        1.0,
        "fraction of num_iterations after which the rates fall linearly to 0; 1: constant",
    ),
    ("training", "adam_b1", 0.5, "Adam's first-moment decay"),
    ("training", "adam_b2", 0.999, "Adam's second-moment decay"),
    ("training", "generator_adam_b1", _UNSET_FLOAT, "the generator's adam_b1; unset: adam_b1"),
    ("training", "generator_adam_b2", _UNSET_FLOAT, "the generator's adam_b2; unset: adam_b2"),
    ("training", "adam_eps", 1e-7, "added to sqrt(v) (Keras' default)"),
    ("training", "adam_eps_root", 0.0, "added to v inside the square root"),
    ("training", "ema_decay", 0.0, "evaluate an EMA of D's weights when > 0"),
    ("training", "supervised_epochs", 30, "epochs of the baseline on the labels alone; 0: none"),
    ("training", "supervised_ema_decay", 0.0, "evaluate an EMA of the baseline when > 0"),
    ("loop", "log_every", 100, "iterations between metrics rows; 0: only at the end"),
    ("loop", "eval_every", 2000, "iterations between evaluations; 0: only at the end"),
    ("loop", "sample_every", 2000, "iterations between sample grids; 0: only at the end"),
    ("loop", "checkpoint_every", 2000, "iterations between checkpoints; 0: only at the end"),
    ("loop", "keep_checkpoints", 3, "checkpoints kept"),
    ("loop", "eval_batch_size", 1000, "images per evaluation batch"),
    ("loop", "tensorboard", True, "TensorBoard event files beside metrics.jsonl"),
    ("loop", "early_stopping_patience", 0, "evals without a better validation accuracy; 0: off"),
    ("loop", "steps_per_dispatch", 0, "iterations per jitted call; 0: 1 on CPU, 100 elsewhere"),
    (
        "devices",
        "num_devices",
        0,
        "local devices; 0: one per run (several seeds spread over the "
        "devices), all of them with --distributed",
    ),
    (
        "devices",
        "matmul_precision",
        "default",
        "float32 matmuls on accelerators: default lets "
        "GPUs use TF32 and TPUs bfloat16 passes; highest is full float32",
    ),
    ("devices", "deterministic", False, "GPU: XLA's deterministic ops, bit-identical reruns"),
)

# jax_default_matmul_precision's values.
MATMUL_PRECISIONS = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")
_POSITIVE = ("batch_size", "learning_rate", "eval_batch_size")
_NON_NEGATIVE = (
    "num_iterations",
    "supervised_epochs",
    "log_every",
    "eval_every",
    "sample_every",
    "checkpoint_every",
    "early_stopping_patience",
    "steps_per_dispatch",
    "num_devices",
    "adam_eps",
    "adam_eps_root",
)
_PROBABILITIES = ("adam_b1", "adam_b2", "ema_decay", "supervised_ema_decay")


def harness_defaults() -> dict:
    """The harness's keys at their defaults; an unset one as a fresh typed placeholder."""
    return {
        key: config_dict.placeholder(default.kind) if isinstance(default, _Unset) else default
        for _, key, default, _ in KEYS
    }


def _plain(value):
    return None if isinstance(value, _Unset) else value


def base_config(method: str) -> ml_collections.ConfigDict:
    """The harness's keys at their defaults, `method`, and the method's keys at theirs."""
    config = ml_collections.ConfigDict(harness_defaults())
    config.method = method
    config.update(methods.get(method).config_defaults)
    return config


def set_method(config, method: str) -> None:
    """Switches `config` to `method`, adding the keys it has that the config lacks."""
    config.method = method
    for key, default in methods.get(method).config_defaults.items():
        if key not in config:
            config[key] = default


def check_config(config) -> None:
    """Checks what can be checked without the data; raises ConfigError naming the key."""
    method = methods.get(config.method)
    input_pipeline.check_config(config)
    models.check_config(config)
    if config.matmul_precision not in MATMUL_PRECISIONS:
        raise ConfigError(
            "matmul_precision",
            f"must be one of {', '.join(MATMUL_PRECISIONS)}; got {config.matmul_precision!r}",
        )
    for key in _POSITIVE:
        if not config[key] > 0:
            raise ConfigError(key, f"must be > 0; got {config[key]}")
    for key in _NON_NEGATIVE:
        if not config[key] >= 0:
            raise ConfigError(key, f"must be >= 0; got {config[key]}")
    for key in _PROBABILITIES:
        if not 0 <= config[key] < 1:
            raise ConfigError(key, f"must be in [0, 1); got {config[key]}")
    for key in ("generator_adam_b1", "generator_adam_b2"):
        if config[key] is not None and not 0 <= config[key] < 1:
            raise ConfigError(key, f"must be in [0, 1) (or unset); got {config[key]}")
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
    method.check_config(config)


def check_devices(config, num_devices: int) -> None:
    if config.batch_size % num_devices:
        raise ConfigError(
            "batch_size", f"{config.batch_size} is not divisible by the {num_devices} devices"
        )


def _legacy_method(saved: dict) -> str:
    # Runs from before config.method chose the method by config.generator_loss.
    return "improved_gan" if saved.get("generator_loss") == "feature_matching" else "sgan"


def comparable(config: dict) -> dict:
    """A saved or current config as a resume compares it: the keys that matter to its method,
    each at its default where the config predates it."""
    method_name = config.get("method") or _legacy_method(config)
    if method_name not in methods.names():
        return {**config, "method": method_name}  # refused as a difference in `method`
    defaults = {key: _plain(default) for _, key, default, _ in KEYS}
    defaults.update(methods.get(method_name).config_defaults, method=method_name)
    defaults = json.loads(json.dumps(defaults))  # as config.json holds them: tuples as lists
    return {key: config.get(key, default) for key, default in defaults.items()}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe in a table cell, escaped


def markdown() -> str:
    """docs/CONFIG.md: every harness key, then every method's own."""
    lines = [
        "# Config keys",
        "",
        "Generated by `python -m sgan_jax.training.config` from",
        "sgan_jax/training/config.py and the methods' `config_defaults`; a test keeps it",
        "in step. Set any key with `--config.KEY=VALUE`.",
        "",
    ]
    section = None
    for name, key, default, text in KEYS:
        if name != section:
            lines += [*([""] if section else []), f"## {name}", "", "| key | default | meaning |"]
            lines.append("|---|---|---|")
            section = name
        lines.append(f"| `{key}` | `{_plain(default)!r}` | {_cell(text)} |")
    for name in methods.names():
        method = methods.get(name)
        lines += ["", f"## method `{name}`", "", "| key | default | meaning |", "|---|---|---|"]
        for key, default in method.config_defaults.items():
            lines.append(f"| `{key}` | `{default!r}` | {_cell(method.config_help.get(key, ''))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
