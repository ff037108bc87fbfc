"""The training state: one pytree with both networks, the PRNG key and the running metrics.

Everything a run needs to continue bit for bit is in here, so a checkpoint of it resumes a run
exactly: batches and noise come from `fold_in(key, step)`, never from host-side state.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from sgan_jax import methods
from sgan_jax.data import sampling
from sgan_jax.methods.base import Stream
from sgan_jax.nets import models

# Independent random streams, all derived from jax.random.key(config.seed). A method's own
# batch streams take their epoch keys from the numbers they declare (Stream.key_id).
STREAMS = dict(
    generator_init=1,
    discriminator_init=2,
    init_batch=3,
    train=4,
    labeled_epochs=5,
    unlabeled_epochs=6,
    samples=7,
    supervised=8,
)

# The discriminator's batch streams, which every method draws.
HARNESS_BATCH_STREAMS = dict(
    labeled=Stream(pool="labeled", key_id=STREAMS["labeled_epochs"]),
    unlabeled=Stream(pool="unlabeled", key_id=STREAMS["unlabeled_epochs"]),
)


def stream(key, name: str):
    return jax.random.fold_in(key, STREAMS[name])


def batch_streams(method) -> dict[str, Stream]:
    """Every stream of batch indices a run of `method` draws: the discriminator's, then the
    method's own, each with a key of its own."""
    taken = set(STREAMS.values())
    for name, own in method.streams.items():
        if name in HARNESS_BATCH_STREAMS or own.key_id in taken:
            raise ValueError(f"method {method.name}: stream {name!r} or its key_id is taken")
        taken.add(own.key_id)
    return {**HARNESS_BATCH_STREAMS, **method.streams}


def stream_samplings(config, streams: dict[str, Stream]) -> dict[str, str]:
    """How each stream is drawn: as its pool is (config.labeled_sampling, unlabeled_sampling)."""
    return {name: config[f"{s.pool}_sampling"] for name, s in streams.items()}


@flax.struct.dataclass
class ParamsEMA:
    """A debiased exponential moving average of parameters (`optax.ema`): `params` is the
    average so far, exact from the first update on, however few updates there were."""

    params: Any
    optax_state: Any

    @classmethod
    def create(cls, params, decay: float) -> "ParamsEMA":
        return cls(jax.tree.map(jnp.copy, params), optax.ema(decay).init(params))

    def update(self, params, decay: float) -> "ParamsEMA":
        averaged, optax_state = optax.ema(decay).update(params, self.optax_state)
        return ParamsEMA(averaged, optax_state)


def create_ema(params, decay: float) -> ParamsEMA | None:
    return ParamsEMA.create(params, decay) if decay > 0 else None


@flax.struct.dataclass
class SGANState:
    step: jax.Array  # iterations done
    generator: train_state.TrainState
    discriminator: train_state.TrainState
    key: jax.Array  # typed PRNG key of the run; each step folds in its number
    discriminator_ema: ParamsEMA | None  # None when config.ema_decay == 0
    metric_sums: jax.Array  # sums of the method's metric_names since the last log step
    metric_count: jax.Array
    nonfinite_step: jax.Array  # first step with a non-finite metric, -1 if none
    nonfinite_metric: jax.Array  # its index in the method's metric_names
    nonfinite_value: jax.Array
    # sampling.EpochSampler per stream sampled in passes; empty when every stream is random.
    samplers: dict = flax.struct.field(default_factory=dict)

    def eval_params(self):
        """The discriminator weights to evaluate: the EMA when there is one."""
        if self.discriminator_ema is not None:
            return self.discriminator_ema.params
        return self.discriminator.params


def adam(config, learning_rate, network: str = "discriminator") -> optax.GradientTransformation:
    """Adam with the config's moments and epsilons; `learning_rate` may be a schedule. The
    generator's moments are generator_adam_b1/_b2 where set (Bad GAN's G uses (0, 0.9999))."""
    b1, b2 = config.adam_b1, config.adam_b2
    if network == "generator":
        b1 = b1 if config.generator_adam_b1 is None else config.generator_adam_b1
        b2 = b2 if config.generator_adam_b2 is None else config.generator_adam_b2
    return optax.adam(
        learning_rate, b1=b1, b2=b2, eps=config.adam_eps, eps_root=config.adam_eps_root
    )


def learning_rate_schedule(config, learning_rate: float):
    """`learning_rate`, constant until `lr_decay_start * num_iterations`, then linearly to 0.

    A constant rate stays a float, so the optimiser state has no schedule counter.
    """
    if config.lr_decay_start >= 1 or not config.num_iterations:
        return learning_rate
    decay_start = round(config.lr_decay_start * config.num_iterations)  # 2/3 * N, not below
    return optax.schedules.join_schedules(
        [
            optax.schedules.constant_schedule(learning_rate),
            optax.schedules.linear_schedule(
                learning_rate, 0.0, config.num_iterations - decay_start
            ),
        ],
        [decay_start],
    )


def learning_rate_schedules(config) -> dict:
    """Both networks' learning rates, as numbers or functions of the step."""
    return {
        "learning_rate": learning_rate_schedule(config, config.learning_rate),
        "generator_learning_rate": learning_rate_schedule(
            config, config.generator_learning_rate or config.learning_rate
        ),
    }


def create_network_state(module, params, tx) -> train_state.TrainState:
    # TrainState.create starts `step` as a Python int; an array keeps the jitted step's input
    # types the same on every call, so it compiles once.
    state = train_state.TrainState.create(apply_fn=module.apply, params=params, tx=tx)
    return state.replace(step=jnp.zeros((), jnp.int32))


def model_rngs(key) -> dict[str, jax.Array]:
    """RNG streams of the models' stochastic layers (dropout, Gaussian noise)."""
    dropout_key, noise_key = jax.random.split(key)
    return {"dropout": dropout_key, "noise": noise_key}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_params(generator, discriminator, key, latent, init_images):
    g_key, d_key = jax.random.split(key)
    g_params = generator.init({"params": g_key}, latent, train=True)["params"]
    d_rngs = {"params": d_key, **model_rngs(jax.random.fold_in(d_key, 1))}
    d_params = discriminator.init(d_rngs, init_images, train=True)["params"]
    return g_params, d_params


def create_train_state(
    config, generator, discriminator, init_images, pool_sizes: dict | None = None
) -> SGANState:
    """Initialises both networks (data-dependent where weight-normalised) and their Adams.

    `init_images` are real training images, scaled, for the discriminator's data-dependent
    initialisation; for the tutorial models only their shape matters. `pool_sizes` gives the
    number of labeled and unlabeled images, needed when a stream is sampled in passes.
    """
    method = methods.get(config.method)
    streams = batch_streams(method)
    root = jax.random.key(config.seed)
    latent = models.sample_latent(
        stream(root, "generator_init"), len(init_images), config.z_dim, config.z_distribution
    )
    g_params, d_params = _init_params(
        generator, discriminator, stream(root, "discriminator_init"), latent, init_images
    )
    g_learning_rate = config.generator_learning_rate or config.learning_rate
    return SGANState(
        step=jnp.zeros((), jnp.int32),
        generator=create_network_state(
            generator,
            g_params,
            adam(config, learning_rate_schedule(config, g_learning_rate), "generator"),
        ),
        discriminator=create_network_state(
            discriminator,
            d_params,
            adam(config, learning_rate_schedule(config, config.learning_rate)),
        ),
        key=root,
        discriminator_ema=create_ema(d_params, config.ema_decay),
        metric_sums=jnp.zeros(len(method.metric_names), jnp.float32),
        metric_count=jnp.zeros((), jnp.int32),
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_metric=jnp.zeros((), jnp.int32),
        nonfinite_value=jnp.zeros((), jnp.float32),
        samplers=sampling.create_samplers(
            stream_samplings(config, streams),
            {name: jax.random.fold_in(root, s.key_id) for name, s in streams.items()},
            {name: pool_sizes[s.pool] for name, s in streams.items()} if pool_sizes else {},
        ),
    )
