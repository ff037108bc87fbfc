"""A saved checkpoint of a run, evaluated again: accuracy, per-class accuracy, confusion matrix.

results.json gives one number per split. Which digits a seed confuses, and whether a seed stuck
below the others fails on one pair of classes or on all of them, needs the predictions. This
reads a run's workdir (config.json and a checkpoint) and writes nothing there, so it can look at
a run that is still training.
"""

import os

import jax
import numpy as np

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs import checkpointing
from sgan_jax.runs import workdir as workdir_lib
from sgan_jax.runs.errors import ConfigError
from sgan_jax.training import config as config_lib
from sgan_jax.training import state as state_lib
from sgan_jax.training import steps

CHECKPOINT_FOLDERS = {"newest": "checkpoints", "best": "best_checkpoint"}


def saved_run_config(path: str):
    """The ConfigDict a run in `path` trained with, from its config.json."""
    saved = workdir_lib.saved_config(path)
    if saved is None:
        raise ConfigError("workdir", f"{path} holds no {workdir_lib.CONFIG_FILE}: not a run")
    values = config_lib.comparable(saved)
    if values["method"] not in methods.names():
        raise ConfigError("workdir", f"its method {values['method']!r} is not one of this code's")
    config = config_lib.base_config(values["method"])
    for key, value in values.items():
        if isinstance(config.get(key), tuple) and isinstance(value, list):
            value = tuple(value)  # config.json holds tuples as lists
        config[key] = value
    return config


def _checkpoint_step(checkpointer: checkpointing.Checkpointer, step: int | None) -> int:
    saved, directory = checkpointer.steps(), checkpointer.directory
    if not saved:
        raise ConfigError("checkpoint", f"{directory} holds no checkpoint")
    if step is None:
        return saved[-1]
    if step not in saved:
        raise ConfigError("step", f"{step} is not saved in {directory}; saved: {saved}")
    return step


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def summarize(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class accuracy (recall), the confusion matrix and the commonest mistakes."""
    counts = confusion_matrix(labels, predictions, num_classes)
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    mistakes = counts - np.diag(np.diag(counts))
    order = np.argsort(-mistakes, axis=None, kind="stable")
    commonest = [
        dict(true=int(t), predicted=int(p), count=int(mistakes[t, p]))
        for t, p in zip(*np.unravel_index(order[:5], counts.shape), strict=True)
        if mistakes[t, p]
    ]
    return dict(
        accuracy=float(np.trace(counts) / counts.sum()),
        errors=int(mistakes.sum()),
        examples=int(counts.sum()),
        per_class_accuracy=[float(a) for a in per_class],
        confusion_matrix=counts.tolist(),
        commonest_mistakes=commonest,
    )


def evaluate_checkpoint(path: str, checkpoint: str = "newest", step: int | None = None) -> dict:
    """Evaluates the checkpoint of the run in `path` ("newest" or "best", at `step` or the last
    saved) on the test split and, where the run holds one out, the validation split."""
    if checkpoint not in CHECKPOINT_FOLDERS:
        raise ConfigError("checkpoint", f"must be one of {', '.join(CHECKPOINT_FOLDERS)}")
    config = saved_run_config(path)
    directory = os.path.join(path, CHECKPOINT_FOLDERS[checkpoint])
    if not os.path.isdir(directory):  # before a Checkpointer, which would create it
        raise ConfigError("checkpoint", f"{directory} holds no checkpoint")
    with checkpointing.Checkpointer(directory, None) as checkpointer:
        step = _checkpoint_step(checkpointer, step)
        dataset = input_pipeline.load_for_processes(config, models.SUPPORTED_SHAPES)
        split = input_pipeline.select_for_configs([config], dataset)[0]
        generator, discriminator = models.create_models(
            config, dataset.image_shape, dataset.num_classes
        )
        like = state_lib.create_train_state(
            config,
            generator,
            discriminator,
            input_pipeline.init_images(config, dataset, split),
            split.pool_sizes,
        )
        state = checkpointer.restore(step, like)
    predict = jax.jit(steps.make_predict(discriminator, config.image_range, config.eval_batch_size))
    weights = {"evaluated": state.eval_params()}
    if state.discriminator_ema is not None:
        weights["raw"] = state.discriminator.params  # the weights the EMA averages
    splits = {"test": (dataset.test_images, dataset.test_labels)}
    if config.num_validation:
        splits["validation"] = (
            dataset.train_images[split.validation],
            dataset.train_labels[split.validation],
        )
    out = dict(workdir=path, checkpoint=checkpoint, step=step, method=config.method)
    for weights_name, params in weights.items():
        for split_name, (images, labels) in splits.items():
            predictions = np.asarray(predict(params, images))
            out[f"{weights_name}_{split_name}"] = summarize(
                labels, predictions, dataset.num_classes
            )
    return out
