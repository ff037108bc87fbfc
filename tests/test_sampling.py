"""Batch sampling in passes ("epoch"): every item once per pass, carried in the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgan_jax import methods
from sgan_jax.data import input_pipeline, sampling
from sgan_jax.nets import models
from sgan_jax.training import steps
from sgan_jax.training.state import batch_streams, create_train_state

from .conftest import tiny


def reference_positions(key, pool_size: int, batch_size: int, num_steps: int) -> np.ndarray:
    """The run of passes written out whole: pass p is permutation(fold_in(key, p))."""
    num_passes = num_steps * batch_size // pool_size + 2
    run = np.concatenate(
        [np.asarray(sampling.pass_permutation(key, p, pool_size)) for p in range(num_passes)]
    )
    return run[: num_steps * batch_size].reshape(num_steps, batch_size)


@pytest.mark.parametrize(
    "pool_size,batch_size", [(7, 3), (100, 100), (20, 100), (5, 2), (59, 25), (300, 100)]
)
def test_carried_passes_equal_the_whole_run_of_permutations(pool_size, batch_size):
    key = jax.random.key(0)
    num_steps = 3 * pool_size // np.gcd(pool_size, batch_size)  # whole passes
    num_steps = min(num_steps, 60)
    next_batch = jax.jit(sampling.next_epoch_batch, static_argnums=3)
    sampler = sampling.create_epoch_sampler(key, pool_size)
    positions = []
    for step in range(num_steps):
        sampler, batch = next_batch(sampler, key, step, batch_size)
        positions.append(np.asarray(batch))
        # The carried pass is the one that holds the next batch.
        next_pass = (step + 1) * batch_size // pool_size
        np.testing.assert_array_equal(
            sampler.permutation, sampling.pass_permutation(key, next_pass, pool_size)
        )
    positions = np.stack(positions)
    np.testing.assert_array_equal(
        positions, reference_positions(key, pool_size, batch_size, num_steps)
    )
    whole = positions.reshape(-1)[: len(positions.reshape(-1)) // pool_size * pool_size]
    for one_pass in whole.reshape(-1, pool_size):
        assert sorted(one_pass.tolist()) == list(range(pool_size))


def test_passes_are_drawn_only_when_a_batch_reaches_them():
    """Inside a pass the step leaves the carried permutation as it is; it is not redrawn."""
    key = jax.random.key(1)
    sampler = sampling.create_epoch_sampler(key, 1000)
    poisoned = sampling.EpochSampler(jnp.arange(1000, dtype=jnp.int32)[::-1])
    moved, positions = sampling.next_epoch_batch(poisoned, key, 2, 100)
    # Step 2 reads positions 200..299 of pass 0 from the carried (here: reversed) order.
    np.testing.assert_array_equal(positions, np.arange(799, 699, -1))
    np.testing.assert_array_equal(moved.permutation, poisoned.permutation)
    assert not np.array_equal(sampler.permutation, poisoned.permutation)


def test_both_unlabeled_streams_of_the_improved_step_sample_in_passes(improved_config, mnist):
    """D's unlabeled batch and the generator's feature-matching batch walk their own passes
    (fm.py's trainx_unl and trainx_unl2), the labeled batch its own."""
    config = tiny(improved_config, batch_size=100, init_batch_size=100)
    split = input_pipeline.select_labels(mnist.train_labels, 100, "balanced", 10, 0, 59_600)
    assert split.pool_sizes == {"labeled": 100, "unlabeled": 300}
    generator, discriminator = models.create_models(config, (28, 28, 1), 10)
    images = input_pipeline.scale_images(mnist.train_images[:100], "unit")
    state = create_train_state(config, generator, discriminator, images, split.pool_sizes)
    assert set(state.samplers) == {"labeled", "unlabeled", "unlabeled_g"}
    data = jax.device_put(input_pipeline.device_data(mnist, split))
    train_step = jax.jit(steps.make_train_step(config, generator, discriminator))
    for _ in range(4):  # past the end of the first unlabeled pass (3 batches of 100)
        state = train_step(state, data)
    expected = {"labeled": (4, 100), "unlabeled": (1, 300), "unlabeled_g": (1, 300)}
    streams = batch_streams(methods.get(config.method))
    for name, (pass_index, pool_size) in expected.items():
        np.testing.assert_array_equal(
            state.samplers[name].permutation,
            sampling.pass_permutation(
                jax.random.fold_in(state.key, streams[name].key_id), pass_index, pool_size
            ),
            err_msg=name,
        )
    assert not np.array_equal(
        state.samplers["unlabeled"].permutation, state.samplers["unlabeled_g"].permutation
    )


def test_random_sampling_carries_nothing(tutorial_config):
    generator, discriminator = models.create_models(tutorial_config, (28, 28, 1), 10)
    images = jnp.zeros((4, 28, 28, 1))
    state = create_train_state(tutorial_config, generator, discriminator, images)
    assert state.samplers == {}
