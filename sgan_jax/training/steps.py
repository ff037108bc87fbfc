"""The training iteration of any method, and the evaluation, as pure functions for `jax.jit`.

One iteration (`sgan_jax.methods.base` says what a method supplies):
1. a labeled and an unlabeled batch are drawn, and a batch generated from the current generator;
2. the discriminator takes one Adam step on the method's discriminator objective;
3. the method's own batch streams are drawn;
4. the generator takes one Adam step on the method's generator objective, against the updated
   discriminator, and the discriminator's EMA moves.
Batches and noise come from `fold_in(key, step)`, on the device.
"""

import dataclasses

import jax
import jax.numpy as jnp

from sgan_jax import methods
from sgan_jax.data import sampling
from sgan_jax.data.input_pipeline import IMAGE_RANGES, scale_images
from sgan_jax.methods.base import DiscriminatorBatch, StepContext
from sgan_jax.nets import models
from sgan_jax.training.state import SGANState, batch_streams, model_rngs, stream

# The keys an iteration splits from fold_in(train key, step), by use. Their number and order
# are fixed: every checkpointed run draws the same noise when it resumes.
STEP_KEYS = (
    "labeled",  # random sampling of the labeled batch
    "unlabeled",  # ... of the unlabeled batch
    "method_batches",  # ... of the method's own streams
    "fake_for_discriminator",  # the latent of the discriminator's generated batch
    "fake_for_generator",  # the latent of the generator's objective
    "discriminator",  # dropout and noise of the discriminator's pass
    "generator",  # dropout and noise of the passes in the generator's objective
)


def _track_metrics(state: SGANState, values, log_every: int) -> dict:
    """Running sums since the last log step, and the first step with a non-finite metric."""
    values = values.astype(jnp.float32)
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


@dataclasses.dataclass(frozen=True)
class Nets:
    """The networks as a method's objectives use them (`sgan_jax.methods.base.Nets`): in
    training mode, each batch placed on the devices by `shard_batch`."""

    config: object
    generator: object
    discriminator: object
    shard_batch: object

    def discriminate(self, d_params, images, key, return_features=False):
        return self.discriminator.apply(
            {"params": d_params},
            self.shard_batch(images),
            train=True,
            rngs=model_rngs(key),
            return_features=return_features,
        )

    def generate(self, g_params, z_key, num=None):
        config = self.config
        num = num or config.batch_size
        z = models.sample_latent(z_key, num, config.z_dim, config.z_distribution)
        return self.generator.apply({"params": g_params}, self.shard_batch(z), train=True)


def _stacked(metrics: dict, names) -> jax.Array:
    if set(metrics) != set(names):
        raise ValueError(f"the objectives returned {sorted(metrics)}, not {sorted(names)}")
    return jnp.stack([metrics[name] for name in names])


def make_train_step(config, generator, discriminator, shard_batch=lambda x: x, seed_axis=None):
    """Returns train_step(state, data, step=None) -> state, one iteration of config.method.

    `data` is `input_pipeline.device_data(...)`, with the method's arrays under "method" (absent
    when it has none). `shard_batch` places a batch on the devices (data parallelism); the
    identity on one device. `seed_axis` names the vmap axis of seeds trained together
    (`make_seeds_train_step`), None when the step is not vmapped.
    """
    method = methods.get(config.method)
    nets = Nets(config, generator, discriminator, shard_batch)
    streams = batch_streams(method)

    def draw(state, data, step, samplers, name, random_key):
        """(samplers, indices): a batch of stream `name`."""
        epoch_key = jax.random.fold_in(state.key, streams[name].key_id)
        pool = data[f"{streams[name].pool}_idx"]
        return sampling.sample(samplers, name, random_key, epoch_key, step, config.batch_size, pool)

    def images(data, indices):
        return scale_images(data["images"][indices], config.image_range)

    def update_discriminator(state, data, step, keys):
        """(discriminator state, metrics, samplers) after the discriminator's Adam step."""
        with jax.named_scope("sample_batches"):  # a scope names its ops in profiles
            samplers, labeled = draw(state, data, step, state.samplers, "labeled", keys["labeled"])
            samplers, unlabeled = draw(state, data, step, samplers, "unlabeled", keys["unlabeled"])
        batch = DiscriminatorBatch(
            labeled=images(data, labeled),
            labels=data["labels"][labeled],
            unlabeled=images(data, unlabeled),
            fake=nets.generate(state.generator.params, keys["fake_for_discriminator"]),
        )

        def loss(d_params):
            return method.discriminator_loss(config, nets, d_params, batch, keys["discriminator"])

        grads, metrics = jax.grad(loss, has_aux=True)(state.discriminator.params)
        with jax.named_scope("adam"):
            return state.discriminator.apply_gradients(grads=grads), metrics, samplers

    def update_generator(state, data, step, keys, d_params, samplers):
        """(generator state, metrics, samplers) after the generator's Adam step."""
        extra = {}
        with jax.named_scope("sample_batches"):
            for i, name in enumerate(method.streams):
                key = keys["method_batches"]
                key = key if i == 0 else jax.random.fold_in(key, i)
                samplers, indices = draw(state, data, step, samplers, name, key)
                extra[name] = images(data, indices)

        context = StepContext(step, data.get("method", {}), seed_axis)

        def loss(g_params):
            z_key, key = keys["fake_for_generator"], keys["generator"]
            return method.generator_loss(
                config, nets, g_params, d_params, extra, z_key, key, context
            )

        grads, metrics = jax.grad(loss, has_aux=True)(state.generator.params)
        with jax.named_scope("adam"):
            return state.generator.apply_gradients(grads=grads), metrics, samplers

    def train_step(state: SGANState, data, step=None) -> SGANState:
        # Seeds trained together (vmapped states) share the step: passed unbatched, it keeps
        # the samplers' lax.cond a real branch instead of a select that runs both sides.
        step = state.step if step is None else step
        step_key = jax.random.fold_in(stream(state.key, "train"), step)
        keys = dict(zip(STEP_KEYS, jax.random.split(step_key, len(STEP_KEYS)), strict=True))
        d_state, d_metrics, samplers = update_discriminator(state, data, step, keys)
        g_state, g_metrics, samplers = update_generator(
            state, data, step, keys, d_state.params, samplers
        )
        ema = state.discriminator_ema
        if ema is not None:
            with jax.named_scope("ema"):
                ema = ema.update(d_state.params, config.ema_decay)
        values = _stacked({**d_metrics, **g_metrics}, method.metric_names)
        return state.replace(
            step=step + 1,
            generator=g_state,
            discriminator=d_state,
            discriminator_ema=ema,
            samplers=samplers,
            **_track_metrics(state, values, config.log_every),
        )

    return train_step


SEED_AXIS = "seeds"


def make_seeds_train_step(config, generator, discriminator, shard_batch=lambda x: x):
    """Returns train_step(states, data, step) -> states, one iteration of every seed trained
    together, vmapped over the seeds' leading axis. `data` has the method's arrays under
    "method" ({} when it has none). The step is shared and unbatched, which
    keeps the samplers' lax.cond a real branch instead of a select that runs both sides."""
    train_step = make_train_step(config, generator, discriminator, shard_batch, SEED_AXIS)
    # Each seed has its own labeled split; the images, labels and method arrays are shared.
    data_axes = {"images": None, "labels": None, "labeled_idx": 0, "unlabeled_idx": 0}
    data_axes["method"] = None
    return jax.vmap(train_step, in_axes=(0, data_axes, None), axis_name=SEED_AXIS)


def make_train_steps(train_step):
    """Returns train_steps(state, data, step, num_steps): iterations step .. step + num_steps - 1
    in one dispatch."""

    def train_steps(state, data, step, num_steps: int):
        return jax.lax.fori_loop(0, num_steps, lambda i, s: train_step(s, data, step + i), state)

    return train_steps


def make_predict(discriminator, image_range: str, batch_size: int):
    """Returns predict(params, images) -> class indices, in inference mode, `batch_size` images
    at a time (the last batch padded)."""

    def predict(params, images):
        num = images.shape[0]
        num_batches = -(-num // batch_size)
        pad = num_batches * batch_size - num
        images = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))

        def classes(batch):
            logits = discriminator.apply(
                {"params": params}, scale_images(batch, image_range), train=False
            )
            return jnp.argmax(logits, axis=-1)

        batches = images.reshape(num_batches, batch_size, *images.shape[1:])
        return jax.lax.map(classes, batches).reshape(-1)[:num]

    return predict


def make_evaluate(discriminator, image_range: str, batch_size: int):
    """Returns evaluate(params, images, labels) -> accuracy, in inference mode."""
    predict = make_predict(discriminator, image_range, batch_size)

    def evaluate(params, images, labels):
        return jnp.sum(predict(params, images) == labels) / images.shape[0]

    return evaluate


def make_generate(generator, config):
    """Returns generate(params, key, num) -> images scaled to [0, 1], for sample grids."""
    low, high = IMAGE_RANGES[config.image_range]

    def generate(params, key, num: int):
        z = models.sample_latent(key, num, config.z_dim, config.z_distribution)
        images = generator.apply({"params": params}, z, train=True)
        return (images - low) / (high - low)

    return generate
