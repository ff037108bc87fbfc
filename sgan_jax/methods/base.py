"""The method interface: what a GAN-based semi-supervised method declares to the harness.

A method is one module of `sgan_jax.methods` whose `METHOD` is an instance of a `Method`
subclass. It declares its two objectives, the batches it draws beyond the discriminator's
labeled and unlabeled ones, the metrics it logs and its own config keys. The harness
(`sgan_jax.training`) owns the rest: the state, the jitted loop, the EMA, evaluation,
checkpoints and sweeps.

One iteration, for every method:
1. the harness draws a labeled and an unlabeled batch, and generates a batch from the current
   generator;
2. the discriminator takes one Adam step on `discriminator_loss`;
3. the harness draws the method's own `streams`;
4. the generator takes one Adam step on `generator_loss`, against the updated discriminator.
"""

import dataclasses
from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp

from sgan_jax.runs.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Stream:
    """A stream of batch indices that a method draws besides the discriminator's labeled and
    unlabeled batches (feature matching's second unlabeled batch, say)."""

    pool: str  # "labeled" | "unlabeled": drawn from that pool, as config.<pool>_sampling says
    # Its epoch key is fold_in(the run's key, key_id): unique among the run's random streams.
    key_id: int


@dataclasses.dataclass(frozen=True)
class DiscriminatorBatch:
    """The discriminator's batches of one iteration, scaled to the config's image range."""

    labeled: jax.Array
    labels: jax.Array
    unlabeled: jax.Array
    fake: jax.Array  # from the generator before this iteration's update


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What else the generator's objective may read: the iteration, the method's own arrays
    (`Method.method_data`) on the devices, and the name of the axis of the seeds trained
    together (None outside their vmap)."""

    step: jax.Array
    method_data: dict
    seed_axis: str | None = None

    def any_seed(self, predicate: jax.Array) -> jax.Array:
        """`predicate` (a per-seed bool) or-ed over the seeds trained together: the predicate
        of a `lax.cond` that skips work no seed needs. Under the seeds' vmap a per-seed
        predicate turns the cond into a select that runs both branches every iteration; this
        one is the same for all seeds, so the cond stays a branch. Mask the branch's result
        per seed with `predicate`."""
        if self.seed_axis is None:
            return predicate
        return jax.lax.pmax(predicate.astype(jnp.int32), self.seed_axis) > 0


class Nets(Protocol):
    """The two networks in training mode, on the run's devices, as the harness gives them."""

    def discriminate(self, d_params, images, key, return_features: bool = False):
        """Class logits (and the last hidden layer before its noise) of `images`; `key`
        draws the dropout and Gaussian noise."""

    def generate(self, g_params, z_key, num: int | None = None):
        """`num` generated images (a batch's by default) from the latent drawn by `z_key`."""


class Method:
    """Base class of the methods; subclasses set the class variables and the two objectives."""

    name: ClassVar[str]
    # The method's own config keys with their defaults. A saved config.json without one of
    # them is a run with its default, so a key added later keeps older workdirs resuming.
    config_defaults: ClassVar[dict[str, Any]] = {}
    config_help: ClassVar[dict[str, str]] = {}  # a line per key, for docs/CONFIG.md
    # What the objectives return, in the order they are logged to metrics.jsonl.
    metric_names: ClassVar[tuple[str, ...]]
    # The metrics of the progress line, besides the step, the accuracies and the rate.
    log_line: ClassVar[tuple[str, ...]] = (
        "d_loss_supervised",
        "d_loss_unsupervised",
        "g_loss",
        "train_accuracy",
    )
    streams: ClassVar[dict[str, Stream]] = {}

    def check_config(self, config) -> None:
        """Raises ConfigError naming the first of the method's keys that is out of range."""
        for key in self.config_defaults:
            if key not in config:
                raise ConfigError(key, f"is missing (method {self.name} needs it)")

    def method_data(self, config, dataset, split) -> dict:
        """Arrays the objectives read besides the batches (a density model's parameters, say),
        made once on the host and passed to the jitted step as an argument, never closed over;
        the seeds trained together share them. None by default."""
        return {}

    def describe_data(self, method_data: dict) -> dict:
        """The figures of `method_data` a reader of results.json needs (a threshold, say), as
        plain JSON values; recorded as its `method_data`."""
        return {}

    def discriminator_loss(self, config, nets: Nets, d_params, batch: DiscriminatorBatch, key):
        """(loss, metrics dict) of the discriminator's parameters."""
        raise NotImplementedError

    def generator_loss(
        self, config, nets: Nets, g_params, d_params, extra: dict, z_key, key, context
    ):
        """(loss, metrics dict) of the generator's parameters; `extra` holds the images of the
        method's `streams` by name, `d_params` the updated discriminator's, `context` a
        StepContext."""
        raise NotImplementedError


def check_non_negative(config, *keys: str) -> None:
    for key in keys:
        if not config[key] >= 0:
            raise ConfigError(key, f"must be >= 0; got {config[key]}")
