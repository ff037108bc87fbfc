"""Trains the density model that Bad GAN's low-density term reads, as a run of its own.

The model (`sgan_jax.nets.density`) learns log p(x) of the training images but a held-out set,
which stays for Bad GAN's threshold (the 10th percentile of its log-probabilities) and never
trains the density. Checkpoints resume it exactly, as any run here. At the end it writes:

  results.json      test negative log-likelihood in bits per dimension, beside a per-pixel
                    independent baseline's (each pixel a smoothed histogram of the training set)
  density.msgpack   the parameters; density.json what they model (dataset, levels, image range,
                    the network), which a Bad GAN run checks before it loads them
  held_out.npy      the training-set indices held out
  samples/          16 images drawn from the model; plots/: train bits/dim against updates
"""

import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgan_jax.data import input_pipeline
from sgan_jax.nets import density as density_nets
from sgan_jax.nets import models
from sgan_jax.runs import checkpointing, errors, metrics, plots, provenance, workdir
from sgan_jax.runs.errors import ConfigError, Preempted
from sgan_jax.training import progress

IMAGE_RANGE = density_nets.IMAGE_RANGE


@flax.struct.dataclass
class DensityState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    key: jax.Array


# uint8 images: 256 values a pixel.
LEVELS = 256


MODELS = ("made", "pixelcnn")


def create_model(config):
    if config.model == "made":
        return density_nets.MADE(
            num_pixels=784,
            hidden_sizes=tuple(config.hidden_sizes),
            mixtures=config.mixtures,
            levels=LEVELS,
        )
    return density_nets.PixelCNN(
        filters=config.filters,
        resnets=config.resnets,
        scales=config.scales,
        mixtures=config.mixtures,
        levels=LEVELS,
    )


def network_description(config) -> dict:
    """The keys of `config` that shape its network, as density.json records them."""
    if config.model == "made":
        return dict(hidden_sizes=list(config.hidden_sizes), mixtures=config.mixtures)
    return dict(
        filters=config.filters,
        resnets=config.resnets,
        scales=config.scales,
        mixtures=config.mixtures,
    )


def check_config(config) -> None:
    if config.model not in MODELS:
        raise ConfigError("model", f"must be one of {', '.join(MODELS)}; got {config.model!r}")
    positive = ("batch_size", "num_steps", "learning_rate", "mixtures", "num_held_out")
    if config.model == "pixelcnn":
        positive += ("filters", "resnets", "scales")
    for key in (*positive, "log_every", "checkpoint_every"):
        if not config[key] > 0:
            raise ConfigError(key, f"must be > 0; got {config[key]}")


def held_out_split(num_train: int, num_held_out: int, seed: int):
    """(training indices, held-out indices), drawn by `seed`."""
    if num_held_out >= num_train:
        raise ConfigError("num_held_out", f"{num_held_out} leaves no training image")
    order = np.random.default_rng(seed).permutation(num_train)
    return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])


def make_update(model, tx, batch_size: int):
    """update(state, images, pool) -> (state, loss): one Adam step on -log p / pixel of a batch
    drawn uniformly from `pool` (indices into `images`) by fold_in(key, step)."""

    def loss_fn(params, batch):
        return -jnp.mean(model.apply(params, batch)) / batch.shape[1]

    def update(state, images, pool):
        key = jax.random.fold_in(state.key, state.step)
        chosen = pool[jax.random.randint(key, (batch_size,), 0, pool.shape[0])]
        batch = input_pipeline.scale_images(images[chosen], IMAGE_RANGE).reshape(batch_size, -1)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss

    return update


def bits_per_dim(model, params, images, batch_size: int = 500) -> float:
    """Mean negative log2-likelihood per pixel of uint8 `images` (the model's exact one)."""
    log_probs = density_nets.image_log_probs(model, params, images, batch_size)
    return -float(np.sum(log_probs, dtype=np.float64)) / (len(images) * 784 * np.log(2))


def independent_bits_per_dim(train_images, test_images, levels: int = LEVELS) -> float:
    """The baseline: every pixel independent, its 256 values a histogram of the training
    images with one added count each (so no test value has probability 0)."""
    train = train_images.reshape(len(train_images), -1)
    test = test_images.reshape(len(test_images), -1)
    counts = np.ones((train.shape[1], levels))
    np.add.at(counts, (np.arange(train.shape[1])[None, :], train.astype(np.int64)), 1)
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(test.shape[1])[None, :], test.astype(np.int64)]))


def initial_state(config, model, tx) -> DensityState:
    key = jax.random.key(config.seed)
    params = model.init(jax.random.fold_in(key, 0), jnp.zeros((1, 784)))
    return DensityState(jnp.zeros((), jnp.int32), params, tx.init(params), key)


def write_outputs(path: str, config, state, held_out, results: dict) -> None:
    params_file, info_file, held_out_file = density_nets.density_files(path)
    with open(params_file, "wb") as f:
        f.write(flax.serialization.to_bytes(state.params))
    info = dict(
        dataset=config.dataset,
        image_range=IMAGE_RANGE,
        levels=LEVELS,
        model=config.model,
        **network_description(config),
        step=int(state.step),
    )
    metrics.atomic_write_json(info_file, info)
    np.save(held_out_file, held_out)
    metrics.atomic_write_json(os.path.join(path, "results.json"), results)
    _write_figures(path, config, state)


def _write_figures(path: str, config, state) -> None:
    """samples/samples.png: 16 images drawn from the model; plots/: train bits/dim by step."""
    model = create_model(config)
    # A key of its own: a split of the seed's, where training folds in step numbers.
    key = jax.random.split(jax.random.key(config.seed))[1]
    drawn = jax.jit(density_nets.sample, static_argnums=(0, 3, 4))(
        model, state.params, key, 16, 784
    )
    images = (np.asarray(drawn).reshape(16, 28, 28, 1) + 1) / 2
    plots.save_sample_grid(images, os.path.join(path, "samples", "samples.png"))
    rows = metrics.read_rows(os.path.join(path, "metrics.jsonl"))
    plots.plot_series(
        rows, "train_bits_per_dim", os.path.join(path, "plots", "train_bits_per_dim.png")
    )


# The losses since the last metrics row, kept when a signal stops the run between two rows, so
# that the resumed run writes the row the run never stopped would have.
PENDING_FILE = "pending_losses.json"


def _pending_losses(path: str, step: int) -> list:
    pending = os.path.join(path, PENDING_FILE)
    saved = metrics.read_json(pending) if os.path.exists(pending) else {"step": None}
    if saved["step"] != step:
        return []
    return [jnp.float32(loss) for loss in saved["losses"]]


def _train_loop(config, state, step, update, data, writer, checkpointer, stop, path, clock):
    """Steps `step` .. num_steps: a metrics row every log_every, a checkpoint every
    checkpoint_every, at the end, and where a stop signal ends the run; returns the state."""
    images, pool = (jnp.asarray(x) for x in data)
    losses = _pending_losses(path, step)
    while step < config.num_steps:
        state, loss = update(state, images, pool)
        step += 1
        losses.append(loss)
        if step % config.log_every == 0 or step == config.num_steps:
            nats = float(jnp.mean(jnp.stack(losses)))
            writer.write({"step": step, "train_bits_per_dim": nats / np.log(2)})
            losses = []
        stopping = stop.should_stop()
        if stopping or step % config.checkpoint_every == 0 or step == config.num_steps:
            checkpointer.save(step, state, {"elapsed_seconds": _run_seconds(clock)})
        if stopping:
            pending = {"step": step, "losses": [float(x) for x in losses]}
            metrics.atomic_write_json(os.path.join(path, PENDING_FILE), pending)
            break
    checkpointer.close()
    return state


def _train(config, path: str, dataset, train_idx, stop, clock: progress.Clock):
    """Restores the newest checkpoint (if any) and trains to num_steps or a stop signal."""
    model, tx = create_model(config), optax.adam(config.learning_rate)
    checkpointer = checkpointing.Checkpointer(os.path.join(path, "checkpoints"), 2)
    restored, step = checkpointer.restore_latest(initial_state(config, model, tx))
    state = restored or initial_state(config, model, tx)
    # Training's wall time across resumes: unknown (None) after a checkpoint saved without it.
    clock.before = checkpointer.metadata(step).get("elapsed_seconds") if step else 0.0
    workdir.record(path, config, {}, step)
    writer = metrics.MetricsWriter(os.path.join(path, "metrics.jsonl"), step)
    update = jax.jit(make_update(model, tx, config.batch_size), donate_argnums=0)
    stop.during_training = True
    data = (dataset.train_images, train_idx)
    state = _train_loop(config, state, step, update, data, writer, checkpointer, stop, path, clock)
    stop.during_training = False
    if stop.signal_name is not None:
        raise Preempted(stop.signal_name, int(state.step))
    return state


def _run_seconds(clock: progress.Clock) -> float | None:
    """Training's wall time across resumes; None after a checkpoint saved without it."""
    return None if clock.before is None else clock.run_seconds()


def _results(config, state, dataset, train_idx, held_out, clock: progress.Clock) -> dict:
    model = create_model(config)
    results = dict(
        dataset=config.dataset,
        final_step=int(state.step),
        test_bits_per_dim=bits_per_dim(model, state.params, dataset.test_images),
        held_out_bits_per_dim=bits_per_dim(model, state.params, dataset.train_images[held_out]),
        independent_test_bits_per_dim=independent_bits_per_dim(
            dataset.train_images[train_idx], dataset.test_images
        ),
        num_held_out=len(held_out),
    )
    return dict(
        results,
        wall_seconds=_run_seconds(clock),  # training and this evaluation
        process_wall_seconds=clock.process_seconds(),
        process_started=clock.process_start,
        finished=time.time(),
    )


def train_density(config, path: str) -> dict:
    """Trains (or resumes) the density model in workdir `path`; returns results.json's dict.
    A stop signal (SIGTERM, SIGINT) saves a checkpoint and raises Preempted."""
    clock = progress.Clock(time.time())
    check_config(config)
    origin = provenance.machine_and_code()  # the code that runs, before anything changes it
    dataset = input_pipeline.load_for_processes(config, models.SUPPORTED_SHAPES)
    if dataset.image_shape != (28, 28, 1):
        raise ConfigError("dataset", f"{config.dataset!r} is not 28x28x1")
    train_idx, held_out = held_out_split(
        len(dataset.train_labels), config.num_held_out, config.data_seed
    )
    workdir.create(path)
    workdir.check(path, config)
    lock = workdir.lock(path)
    if lock is not None:
        lock.announce()
    try:
        with errors.StopRequests() as stop:
            state = _train(config, path, dataset, train_idx, stop, clock)
        results = dict(_results(config, state, dataset, train_idx, held_out, clock), **origin)
        write_outputs(path, config, state, held_out, results)
    finally:
        if lock is not None:
            lock.close()
    print(json.dumps(results), flush=True)
    return results
