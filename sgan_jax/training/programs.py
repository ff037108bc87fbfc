"""The compiled programs of a run and the device arrays they take.

Every state here has a leading seed axis: one run is a seed axis of size 1, and several seeds
of one config (`train_and_evaluate_seeds`) are trained by the same vmapped programs. With one
seed the batch is split over the devices (data parallelism); with several, the seeds are.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sgan_jax import methods
from sgan_jax.runs import sharding
from sgan_jax.training import steps
from sgan_jax.training.state import stream


def stack(trees):
    """Stacks same-shaped pytrees along a new leading axis. Their static parts (apply_fn, tx)
    are equal but distinct objects, so the first one's tree structure is used for all."""
    leaves = [jax.tree.leaves(tree) for tree in trees]
    return jax.tree.unflatten(
        jax.tree.structure(trees[0]), [jnp.stack(xs) for xs in zip(*leaves, strict=True)]
    )


def pick(tree, i: int):
    """Seed i's part of a seed-batched pytree."""
    return jax.tree.map(lambda x: x[i], tree)


class Programs:
    """`state` (seed-batched), and train / evaluate / sample programs over it."""

    def __init__(
        self,
        config,
        configs,
        dataset,
        splits,
        states,
        generator,
        discriminator,
        mesh,
        method_data=None,
    ):
        self.num_seeds = len(configs)
        # One seed splits its batch over the devices; several seeds split the seed axis.
        per_seed = self.num_seeds > 1
        self.batch_mesh_size = 1 if per_seed else mesh.size
        place_seeds = functools.partial(
            sharding.split_leading_axis if per_seed else sharding.replicate, mesh=mesh
        )
        self.place = functools.partial(sharding.replicate, mesh=mesh)
        train_step = steps.make_seeds_train_step(
            config,
            generator,
            discriminator,
            sharding.make_shard_batch(mesh) if not per_seed else lambda x: x,
        )
        evaluate = steps.make_evaluate(discriminator, config.image_range, config.eval_batch_size)
        self.evaluate_one = jax.jit(evaluate)  # the baselines'
        shared = self.place({"images": dataset.train_images, "labels": dataset.train_labels})
        self.test_set = self.place((dataset.test_images, dataset.test_labels))
        indices = place_seeds(
            {
                "labeled_idx": np.stack([s.labeled for s in splits]),
                "unlabeled_idx": np.stack([s.unlabeled for s in splits]),
            }
        )
        self.validation_set = place_seeds(
            (
                np.stack([dataset.train_images[s.validation] for s in splits]),
                np.stack([dataset.train_labels[s.validation] for s in splits]),
            )
        )
        self.state = place_seeds(stack(states))
        self.sample_keys = place_seeds(
            jnp.stack([stream(jax.random.key(c.seed), "samples") for c in configs])
        )
        # The method's own arrays, shared by the seeds trained together.
        if method_data is None:
            method_data = methods.get(config.method).method_data(config, dataset, splits[0])
        self.data = {**shared, **indices, "method": self.place(method_data)}
        # The new state keeps the old one's placement. Left to XLA, seeds split over devices
        # got their step counters back replicated, so the second call compiled the step again.
        placement = jax.tree.map(lambda x: x.sharding, self.state)
        self._step_once = jax.jit(train_step, donate_argnums=0, out_shardings=placement)
        self._step_many = jax.jit(
            steps.make_train_steps(train_step),
            donate_argnums=0,
            static_argnums=3,
            out_shardings=placement,
        )
        self._evaluate_test = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
        self._evaluate_validation = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, 0)))
        generate = jax.vmap(steps.make_generate(generator, config), in_axes=(0, 0, None))
        self._generate = jax.jit(generate, static_argnums=2)

    def train(self, step: int, count: int) -> None:
        """Advances every seed from `step` (the step they are all at) by `count` iterations, in
        one dispatch."""
        step = jnp.asarray(step, jnp.int32)
        if count == 1:
            self.state = self._step_once(self.state, self.data, step)
        else:
            self.state = self._step_many(self.state, self.data, step, count)

    def _compiled_step(self):
        return self._step_once.lower(self.state, self.data, jnp.asarray(0, jnp.int32)).compile()

    def step_cost(self) -> dict:
        """XLA's cost analysis (flops, bytes accessed) of one training iteration."""
        cost = self._compiled_step().cost_analysis()
        return cost[0] if isinstance(cost, list) else cost  # a list in older jax

    def compiled_step_text(self) -> str:
        """The optimised HLO of one training iteration, as XLA runs it."""
        return self._compiled_step().as_text()

    def seed_state(self, i: int):
        return pick(self.state, i)

    def evaluate(self, with_validation: bool) -> list[dict]:
        """Per seed: test (and validation) accuracy of the evaluated weights."""
        params = self.state.eval_params()
        test = sharding.to_host(self._evaluate_test(params, *self.test_set))
        results = [{"test_accuracy": float(a)} for a in test]
        if with_validation:
            validation = sharding.to_host(self._evaluate_validation(params, *self.validation_set))
            for result, accuracy in zip(results, validation, strict=True):
                result["validation_accuracy"] = float(accuracy)
        return results

    def samples(self, num: int = 16) -> np.ndarray:
        """Per seed, `num` images in [0, 1] from the seed's fixed sample noise."""
        return sharding.to_host(self._generate(self.state.generator.params, self.sample_keys, num))

    def host_counters(self) -> dict:
        """The state's running metrics and NaN tracker, on the host (seed-batched)."""
        state = self.state
        return sharding.to_host(
            dict(
                nonfinite_step=state.nonfinite_step,
                nonfinite_metric=state.nonfinite_metric,
                nonfinite_value=state.nonfinite_value,
                metric_sums=state.metric_sums,
                metric_count=state.metric_count,
            )
        )
