"""What each density-model candidate costs on this machine, measured, so that Bad GAN's choice
of density model is written down with its reasons (docs/BAD_GAN.md):

- per epoch of training the density model: the real update of train_density.py on a batch,
  times the updates an epoch takes;
- per Bad GAN iteration: the real train step of the bad_gan recipe with the LD term on every
  step, against the same step with it off; the recipe pays `ld_probability` of the difference.

Both use random images of MNIST's shape and an untrained model of the candidate's shape: the
cost of a forward and backward pass does not depend on what the weights have learnt.
"""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgan_jax.training import benchmark
from sgan_jax.training import density as density_training

# Bad GAN's own PixelCNN (pixelcnn.py: nr_resnet=3, disable_third=True, 160 filters, 10
# logistics), two smaller gated ones, and MADE.
CANDIDATES = {
    "pixelcnn_paper": dict(model="pixelcnn", filters=160, resnets=3, scales=2, mixtures=10),
    "pixelcnn_64": dict(model="pixelcnn", filters=64, resnets=2, scales=2, mixtures=5),
    "pixelcnn_32": dict(model="pixelcnn", filters=32, resnets=1, scales=2, mixtures=5),
    "made_1024": dict(model="made", hidden_sizes=(1024, 1024), mixtures=5),
}
NUM_TRAIN = 55_000  # MNIST's training images but the 5,000 held out


def with_overrides(config, overrides: dict):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.update(overrides)
    return config


def density_update_seconds(config, steps: int) -> tuple[float, int]:
    """(seconds per update of train_density.py's jitted step, the model's parameter count)."""
    model = density_training.create_model(config)
    tx = optax.adam(config.learning_rate)
    state = density_training.initial_state(config, model, tx)
    update = jax.jit(density_training.make_update(model, tx, config.batch_size), donate_argnums=0)
    images = jnp.asarray(
        np.random.default_rng(0).integers(0, 256, (NUM_TRAIN, 28, 28, 1), np.uint8)
    )
    pool = jnp.arange(NUM_TRAIN)
    params = sum(x.size for x in jax.tree.leaves(state.params))
    state, loss = update(state, images, pool)  # compiles
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = update(state, images, pool)
    jax.block_until_ready(loss)
    return (time.perf_counter() - start) / steps, params


def write_untrained(config, folder: str) -> None:
    """A density workdir as train_density.py leaves it, with the candidate's initial weights."""
    model = density_training.create_model(config)
    tx = optax.adam(config.learning_rate)
    state = density_training.initial_state(config, model, tx)
    held_out = np.arange(config.num_held_out)
    density_training.write_outputs(folder, config, state, held_out, {})


def gan_step_seconds(gan_config, folder: str, ld_probability: float, iterations: int) -> float:
    """Seconds per iteration of the Bad GAN step reading the density model in `folder`."""
    config = with_overrides(
        gan_config, dict(density_path=folder, ld_start=0, ld_probability=ld_probability)
    )
    return 1.0 / benchmark.time_steps(config, iterations, warmup=2)["it_per_s"]


def measure(density_config, gan_config, folder: str, steps: int, iterations: int) -> dict:
    """One candidate's costs; `density_config` holds its network, `gan_config` the Bad GAN
    recipe whose LD term would read it."""
    update_seconds, params = density_update_seconds(density_config, steps)
    write_untrained(density_config, folder)
    off = gan_step_seconds(gan_config, folder, 0.0, iterations)
    on = gan_step_seconds(gan_config, folder, 1.0, iterations)
    per_step = off + gan_config.ld_probability * (on - off)
    epoch_updates = math.ceil(NUM_TRAIN / density_config.batch_size)
    return dict(
        params=params,
        density_update_seconds=update_seconds,
        density_epoch_minutes=update_seconds * epoch_updates / 60,
        gan_step_ms_without_ld=1e3 * off,
        ld_application_ms=1e3 * (on - off),
        gan_step_ms=1e3 * per_step,
        gan_hours=per_step * gan_config.num_iterations / 3600,
    )


def markdown(rows: dict, gan_config) -> str:
    lines = [
        "| candidate | parameters | density: s / update | density: min / epoch | GAN step "
        "without LD (ms) | one LD application (ms) | "
        f"GAN step, LD at p = {gan_config.ld_probability} (ms) | "
        f"{gan_config.num_iterations:,} GAN iterations (h) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['params']:,} | {r['density_update_seconds']:.3f} | "
            f"{r['density_epoch_minutes']:.1f} | {r['gan_step_ms_without_ld']:.1f} | "
            f"{r['ld_application_ms']:.1f} | {r['gan_step_ms']:.1f} | {r['gan_hours']:.2f} |"
        )
    return "\n".join(lines)
