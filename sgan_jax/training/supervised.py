"""The supervised baseline: the SGAN's discriminator, freshly initialised, trained on the labeled
images alone, as the tutorial's `mnist_classifier.fit(..., epochs=30, batch_size=32)`.

Like Keras' `fit`, each epoch visits every labeled image once in a fresh random order, in batches
of `batch_size`; the last, smaller batch is masked (its gradient is that of the smaller batch).
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from sgan_jax.data import input_pipeline
from sgan_jax.runs import metrics, plots, sharding
from sgan_jax.training import state as state_lib


def make_supervised_step(config, discriminator, shard_batch=lambda x: x):
    """Returns step(carry, data, order, batch, key) -> carry for batch number `batch` of an
    epoch; `key` is the baseline's `network_key`, an argument so that every seed's baseline is
    one program, which JAX's compilation cache can share (a key made inside would be a constant
    of the seed)."""
    batch_size = config.batch_size

    def step(carry, data, order, batch, key):
        network, ema, sums = carry
        positions = jax.lax.dynamic_slice(order, (batch * batch_size,), (batch_size,))
        mask = (positions >= 0).astype(jnp.float32)
        index = data["labeled_idx"][jnp.maximum(positions, 0)]
        images = shard_batch(input_pipeline.scale_images(data["images"][index], config.image_range))
        labels = data["labels"][index]
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1), network.step)

        def loss_fn(params):
            logits = network.apply_fn(
                {"params": params}, images, train=True, rngs=state_lib.model_rngs(step_key)
            )
            per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
            loss = jnp.sum(per_example * mask) / jnp.sum(mask)
            return loss, (jnp.sum(per_example * mask), jnp.sum(correct * mask), jnp.sum(mask))

        grads, batch_sums = jax.grad(loss_fn, has_aux=True)(network.params)
        network = network.apply_gradients(grads=grads)
        if ema is not None:
            ema = ema.update(network.params, config.supervised_ema_decay)
        return network, ema, sums + jnp.stack(batch_sums)

    return step


def network_key(config):
    return state_lib.stream(jax.random.key(config.seed), "supervised")


def epoch_order(key, num_labeled: int, num_batches: int, batch_size: int):
    """A random order of the labeled set, padded with -1 to whole batches."""
    order = jax.random.permutation(key, num_labeled)
    return jnp.pad(order, (0, num_batches * batch_size - num_labeled), constant_values=-1)


def _initial_network(config, discriminator, dataset, split, key):
    """A fresh discriminator (initialised on the first labeled images), its Adam and EMA."""
    init_count = min(config.init_batch_size or config.batch_size, len(split.labeled))
    init_images = input_pipeline.scale_images(
        dataset.train_images[split.labeled[:init_count]], config.image_range
    )
    init_rngs = {"params": jax.random.fold_in(key, 0), **state_lib.model_rngs(key)}
    params = jax.jit(lambda r, x: discriminator.init(r, x, train=True)["params"])(
        init_rngs, init_images
    )
    network = state_lib.create_network_state(
        discriminator, params, state_lib.adam(config, config.learning_rate)
    )
    return network, state_lib.create_ema(params, config.supervised_ema_decay)


# The baseline's evaluations for model selection: about this many, evenly over its epochs.
SELECTION_EVALS = 30


def _selection_epochs(num_epochs: int) -> set[int]:
    """The epochs (1-based) after which the baseline is evaluated for selection; the last one
    always."""
    every = max(1, num_epochs // SELECTION_EVALS)
    return {e for e in range(1, num_epochs + 1) if e % every == 0} | {num_epochs}


def train_supervised(
    config, discriminator, dataset, split, evaluate, place=lambda x: x, shard_batch=lambda x: x
) -> dict:
    """Trains the baseline; returns its test (and validation) accuracy, per-epoch history and,
    with a validation split, the test accuracy at its best validation epoch, chosen as the
    SGAN's is: the same evaluated weights, the validation split alone deciding.

    `evaluate(params, images, labels)` is the SGAN's jitted evaluation; `place` puts arrays on
    the devices.
    """
    start = time.time()
    key = network_key(config)
    num_labeled = len(split.labeled)
    network, ema = _initial_network(config, discriminator, dataset, split, key)
    data = place(input_pipeline.device_data(dataset, split))
    carry = place((network, ema, jnp.zeros(3, jnp.float32)))
    step = jax.jit(make_supervised_step(config, discriminator, shard_batch), donate_argnums=0)
    num_batches = -(-num_labeled // config.batch_size)
    make_order = jax.jit(epoch_order, static_argnums=(1, 2, 3))
    history = {"loss": [], "accuracy": []}
    sets = _evaluation_sets(dataset, split, place)
    evals, selection_epochs = [], _selection_epochs(config.supervised_epochs)
    for epoch in range(config.supervised_epochs):
        order = make_order(
            jax.random.fold_in(key, 2 + epoch), num_labeled, num_batches, config.batch_size
        )
        for batch in range(num_batches):
            carry = step(carry, data, order, batch, key)
        network, ema, sums = carry
        loss_sum, correct, count = np.asarray(sharding.to_host(sums))
        history["loss"].append(float(loss_sum / count))
        history["accuracy"].append(float(correct / count))
        carry = (network, ema, jnp.zeros_like(sums))
        if "validation" in sets and epoch + 1 in selection_epochs:
            params = ema.params if ema is not None else network.params
            evals.append(dict(epoch=epoch + 1, **_accuracies(evaluate, params, sets)))
    network, ema, _ = carry
    eval_params = ema.params if ema is not None else network.params
    result = dict(**_accuracies(evaluate, eval_params, sets), history=history)
    result["epochs"] = config.supervised_epochs
    if evals:
        best = max(evals, key=lambda e: e["validation_accuracy"])  # the first of ties
        result.update(
            evals=evals,
            selected_test_accuracy=best["test_accuracy"],
            selected_epoch=best["epoch"],
        )
    result["wall_seconds"] = time.time() - start
    return result


def _evaluation_sets(dataset, split, place) -> dict:
    """The test set, and the validation split if there is one, on the devices."""
    sets = {"test": place((dataset.test_images, dataset.test_labels))}
    if len(split.validation):
        sets["validation"] = place(
            (dataset.train_images[split.validation], dataset.train_labels[split.validation])
        )
    return sets


def _accuracies(evaluate, params, sets: dict) -> dict:
    return {
        f"{name}_accuracy": float(sharding.to_host(evaluate(params, *arrays)))
        for name, arrays in sets.items()
    }


def baseline_for_run(config, workdir, discriminator, dataset, split, evaluate, mesh) -> dict:
    """The run's baseline result, trained once per workdir (supervised.json keeps it).

    Its batch is split over the devices when it divides evenly, else every device runs it whole.
    """
    if not config.supervised_epochs:
        return {}
    path = os.path.join(workdir, "supervised.json")
    sharding.sync("sgan_jax:baseline")  # every process looks for supervised.json at once
    if os.path.exists(path):
        return metrics.read_json(path)
    splittable = config.batch_size % mesh.size == 0
    result = train_supervised(
        config,
        discriminator,
        dataset,
        split,
        evaluate,
        lambda tree: sharding.replicate(tree, mesh),
        sharding.make_shard_batch(mesh) if splittable else (lambda x: x),
    )
    if sharding.is_primary():
        metrics.atomic_write_json(path, result)
        plots.plot_baseline_history(
            result["history"], os.path.join(workdir, "plots", "supervised_baseline.png")
        )
        logging.info("Supervised baseline: test accuracy %.4f", result["test_accuracy"])
    return result
