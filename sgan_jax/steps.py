"""The SGAN update and the evaluation, as pure functions for `jax.jit`.

One iteration, as in the tutorial:
1. the discriminator takes one Adam step on the supervised cross-entropy of a labeled batch plus
   `unlabeled_weight` times the real/fake loss 0.5 * (-log D(x_unlabeled) - log(1 - D(G(z)))),
   all three batches in one forward pass;
2. the generator takes one Adam step against the updated discriminator: the non-saturating
   -log D(G(z')), or feature matching on a second unlabeled batch.
Batches are sampled on the device from `fold_in(key, step)`.
"""

import functools

import jax
import jax.numpy as jnp

from sgan_jax import losses, models, sampling
from sgan_jax.input_pipeline import scale_images
from sgan_jax.state import METRIC_NAMES, SAMPLER_STREAMS, SGANState, model_rngs, stream


def _track_metrics(state: SGANState, metrics: dict, log_every: int) -> dict:
    """Running sums since the last log step, and the first step with a non-finite metric."""
    values = jnp.stack([metrics[name] for name in METRIC_NAMES]).astype(jnp.float32)
    fresh = state.metric_count == 0
    if log_every:
        fresh |= state.step % log_every == 0
    finite = jnp.isfinite(values)
    first_bad = jnp.argmin(finite)
    record = ~jnp.all(finite) & (state.nonfinite_step < 0)
    return dict(
        metric_sums=jnp.where(fresh, 0.0, state.metric_sums) + values,
        metric_count=jnp.where(fresh, 0, state.metric_count) + 1,
        nonfinite_step=jnp.where(record, state.step, state.nonfinite_step),
        nonfinite_metric=jnp.where(record, first_bad, state.nonfinite_metric),
        nonfinite_value=jnp.where(record, values[first_bad], state.nonfinite_value),
    )


# The index pool each sampler draws from; both unlabeled streams draw from the unlabeled pool.
_BATCH_POOLS = dict(labeled="labeled_idx", unlabeled="unlabeled_idx", unlabeled_g="unlabeled_idx")


def make_train_step(config, generator, discriminator, shard_batch=lambda x: x):
    """Returns train_step(state, data, step=None) -> state, one SGAN iteration.

    `data` is `input_pipeline.device_data(...)`. `shard_batch` places a batch on the devices
    (data parallelism); the identity on one device.
    """
    batch_size = config.batch_size

    def scaled(images):
        return scale_images(images, config.image_range)

    def latent(key):
        return shard_batch(
            models.sample_latent(key, batch_size, config.z_dim, config.z_distribution)
        )

    def apply_d(d_params, images, key, return_features=False):
        return discriminator.apply(
            {"params": d_params},
            images,
            train=True,
            rngs=model_rngs(key),
            return_features=return_features,
        )

    def d_loss_fn(d_params, images, labels, key):
        """The labeled, unlabeled and generated batches, concatenated, in one pass."""
        logits = jnp.split(apply_d(d_params, images, key), 3)
        return losses.discriminator_loss(*logits, labels, config.unlabeled_weight)

    def g_loss_fn(g_params, d_params, z_key, key, real_features=None):
        """Non-saturating -log D(G(z)), or feature matching against `real_features`."""
        fake = generator.apply({"params": g_params}, latent(z_key), train=True)
        if real_features is None:
            return losses.non_saturating_generator_loss(apply_d(d_params, fake, key))
        _, fake_features = apply_d(d_params, fake, key, return_features=True)
        return losses.feature_matching_loss(real_features, fake_features)

    def train_step(state: SGANState, data, step=None) -> SGANState:
        # Seeds trained together (vmapped states) share the step: passed unbatched, it keeps
        # the samplers' lax.cond a real branch instead of a select that runs both sides.
        step = state.step if step is None else step
        keys = jax.random.split(jax.random.fold_in(stream(state.key, "train"), step), 7)
        labeled_key, unlabeled_key, unlabeled_g_key, z_d_key, z_g_key, d_key, g_key = keys

        def draw(samplers, name, random_key):
            sampler_key = stream(state.key, SAMPLER_STREAMS[name])
            pool = data[_BATCH_POOLS[name]]
            return sampling.sample(samplers, name, random_key, sampler_key, step, batch_size, pool)

        with jax.named_scope("sample_batches"):  # a scope names its ops in profiles
            samplers, labeled = draw(state.samplers, "labeled", labeled_key)
            samplers, unlabeled = draw(samplers, "unlabeled", unlabeled_key)
            labels = data["labels"][labeled]
            real = [scaled(data["images"][labeled]), scaled(data["images"][unlabeled])]
        g_params = state.generator.params
        fake = generator.apply({"params": g_params}, latent(z_d_key), train=True)
        images = shard_batch(jnp.concatenate([*real, fake]))
        d_loss = functools.partial(d_loss_fn, images=images, labels=labels, key=d_key)
        d_grads, metrics = jax.grad(d_loss, has_aux=True)(state.discriminator.params)
        with jax.named_scope("adam"):
            d_state = state.discriminator.apply_gradients(grads=d_grads)

        g_loss = functools.partial(g_loss_fn, d_params=d_state.params, z_key=z_g_key, key=g_key)
        if config.generator_loss == "feature_matching":
            # A second, independent unlabeled batch, and fresh noise and dropout for each of
            # the two passes, as Theano draws them in the Improved-GAN code.
            real_key, fake_key = jax.random.split(g_key)
            with jax.named_scope("sample_batches"):
                samplers, unlabeled_g = draw(samplers, "unlabeled_g", unlabeled_g_key)
                real_images = shard_batch(scaled(data["images"][unlabeled_g]))
            _, real_features = apply_d(d_state.params, real_images, real_key, return_features=True)
            real_features = jax.lax.stop_gradient(real_features)
            g_loss = functools.partial(g_loss, key=fake_key, real_features=real_features)
        metrics["g_loss"], g_grads = jax.value_and_grad(g_loss)(g_params)
        ema = state.discriminator_ema
        if ema is not None:
            with jax.named_scope("ema"):
                ema = ema.update(d_state.params, config.ema_decay)
        with jax.named_scope("adam"):
            g_state = state.generator.apply_gradients(grads=g_grads)
        return state.replace(
            step=step + 1,
            generator=g_state,
            discriminator=d_state,
            discriminator_ema=ema,
            samplers=samplers,
            **_track_metrics(state, metrics, config.log_every),
        )

    return train_step


def make_train_steps(train_step):
    """Returns train_steps(state, data, step, num_steps): iterations step .. step + num_steps - 1
    in one dispatch."""

    def train_steps(state, data, step, num_steps: int):
        return jax.lax.fori_loop(0, num_steps, lambda i, s: train_step(s, data, step + i), state)

    return train_steps


def make_evaluate(discriminator, image_range: str, batch_size: int):
    """Returns evaluate(params, images, labels) -> accuracy, in inference mode."""

    def evaluate(params, images, labels):
        num = images.shape[0]
        num_batches = -(-num // batch_size)
        pad = num_batches * batch_size - num
        images = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
        labels = jnp.pad(labels, (0, pad), constant_values=-1)  # padding never counts

        def correct(batch):
            batch_images, batch_labels = batch
            logits = discriminator.apply(
                {"params": params}, scale_images(batch_images, image_range), train=False
            )
            return jnp.sum(jnp.argmax(logits, axis=-1) == batch_labels)

        batches = (
            images.reshape(num_batches, batch_size, *images.shape[1:]),
            labels.reshape(num_batches, batch_size),
        )
        return jax.lax.map(correct, batches).sum() / num

    return evaluate


def make_generate(generator, config):
    """Returns generate(params, key, num) -> images scaled to [0, 1], for sample grids."""
    low, high = models.IMAGE_RANGES[config.image_range]

    def generate(params, key, num: int):
        z = models.sample_latent(key, num, config.z_dim, config.z_distribution)
        images = generator.apply({"params": params}, z, train=True)
        return (images - low) / (high - low)

    return generate
