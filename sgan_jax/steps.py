"""The SGAN update and the evaluation, as pure functions for `jax.jit`.

One iteration, as in the tutorial:
1. the discriminator takes one Adam step on the supervised cross-entropy of a labeled batch plus
   `unlabeled_weight` times the real/fake loss 0.5 * (-log D(x_unlabeled) - log(1 - D(G(z)))),
   all three batches in one forward pass;
2. the generator takes one Adam step against the updated discriminator: the non-saturating
   -log D(G(z')), or feature matching on a second unlabeled batch.
Batches are sampled on the device from `fold_in(key, step)`.
"""

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

    def train_step(state: SGANState, data, step=None) -> SGANState:
        # Seeds trained together (vmapped states) share the step: passed unbatched, it keeps
        # the samplers' lax.cond a real branch instead of a select that runs both sides.
        step = state.step if step is None else step
        keys = jax.random.split(jax.random.fold_in(stream(state.key, "train"), step), 7)
        labeled_key, unlabeled_key, unlabeled_g_key, z_d_key, z_g_key, d_key, g_key = keys
        samplers = state.samplers

        def draw(name, random_key, batch_pool):
            nonlocal samplers
            samplers, indices = sampling.sample(
                samplers,
                name,
                random_key,
                stream(state.key, SAMPLER_STREAMS[name]),
                step,
                batch_size,
                data[batch_pool],
            )
            return indices

        with jax.named_scope("sample_batches"):  # a scope names its ops in profiles
            labeled = draw("labeled", labeled_key, "labeled_idx")
            unlabeled = draw("unlabeled", unlabeled_key, "unlabeled_idx")
            labels = data["labels"][labeled]
            real = [scaled(data["images"][labeled]), scaled(data["images"][unlabeled])]
        g_params = state.generator.params
        fake = generator.apply({"params": g_params}, latent(z_d_key), train=True)
        images = shard_batch(jnp.concatenate([*real, fake]))

        def d_loss_fn(d_params):
            logits = discriminator.apply(
                {"params": d_params}, images, train=True, rngs=model_rngs(d_key)
            )
            labeled_logits, unlabeled_logits, fake_logits = jnp.split(logits, 3)
            supervised = losses.supervised_loss(labeled_logits, labels)
            real = losses.real_loss(unlabeled_logits)
            fake_ = losses.fake_loss(fake_logits)
            unsupervised = 0.5 * (real + fake_)
            metrics = dict(
                d_loss_supervised=supervised,
                d_loss_unsupervised=unsupervised,
                d_loss_real=real,
                d_loss_fake=fake_,
                train_accuracy=losses.accuracy(labeled_logits, labels),
                d_real_probability=losses.discriminator_probability(unlabeled_logits).mean(),
                d_fake_probability=losses.discriminator_probability(fake_logits).mean(),
            )
            return supervised + config.unlabeled_weight * unsupervised, metrics

        d_grads, metrics = jax.grad(d_loss_fn, has_aux=True)(state.discriminator.params)
        with jax.named_scope("adam"):
            d_state = state.discriminator.apply_gradients(grads=d_grads)

        def apply_d(images, key, return_features=False):
            return discriminator.apply(
                {"params": d_state.params},
                images,
                train=True,
                rngs=model_rngs(key),
                return_features=return_features,
            )

        if config.generator_loss == "feature_matching":
            # A second, independent unlabeled batch, and fresh noise and dropout for each of
            # the two passes, as Theano draws them in the Improved-GAN code.
            real_key, fake_key = jax.random.split(g_key)
            with jax.named_scope("sample_batches"):
                real_images = data["images"][draw("unlabeled_g", unlabeled_g_key, "unlabeled_idx")]
            _, real_features = apply_d(
                shard_batch(scaled(real_images)), real_key, return_features=True
            )
            real_features = jax.lax.stop_gradient(real_features)

            def g_loss_fn(g_params):
                fake = generator.apply({"params": g_params}, latent(z_g_key), train=True)
                _, fake_features = apply_d(fake, fake_key, return_features=True)
                return losses.feature_matching_loss(real_features, fake_features)

        else:

            def g_loss_fn(g_params):
                fake = generator.apply({"params": g_params}, latent(z_g_key), train=True)
                return losses.non_saturating_generator_loss(apply_d(fake, g_key))

        metrics["g_loss"], g_grads = jax.value_and_grad(g_loss_fn)(g_params)
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
