"""Batch indices drawn on the device: uniform with replacement, or in shuffled passes.

"epoch" sampling walks an endless run of fresh permutations of a pool, pass p shuffled by
`fold_in(key, p)`, so every item is seen once per pass, as the Improved-GAN code's per-epoch
`rng.permutation` does. The permutation of the current pass is carried in the training state
(`EpochSampler`): a pass is drawn once, when a batch reaches it, instead of on every step (for
MNIST's 59k unlabeled images a permutation costs about half a CPU step), and a checkpoint of the
state resumes the walk exactly.
"""

import flax
import jax
import jax.numpy as jnp

SAMPLINGS = ("random", "epoch")


@flax.struct.dataclass
class EpochSampler:
    permutation: jax.Array  # int32 positions into the pool: the pass holding the next batch


def pass_permutation(key, pass_index, pool_size: int):
    """The order of pass `pass_index`; a pure function of the key, so any pass can be redrawn."""
    return jax.random.permutation(jax.random.fold_in(key, pass_index), pool_size).astype(jnp.int32)


def create_epoch_sampler(key, pool_size: int) -> EpochSampler:
    return EpochSampler(pass_permutation(key, 0, pool_size))


def next_epoch_batch(sampler: EpochSampler, key, step, batch_size: int):
    """(sampler, positions): positions step*B .. step*B + B - 1 of the run of passes.

    A batch may run into the next passes; only then are they drawn (under `lax.cond`, so
    the other steps pay nothing), and the sampler moves on to the pass that holds the next batch.
    """
    pool_size = sampler.permutation.shape[0]
    # Later passes one batch can reach, the one after it included.
    num_later = (pool_size + batch_size - 1) // pool_size
    start = step * batch_size
    current_pass, offset = start // pool_size, start % pool_size

    def draw_later(_):
        return jax.vmap(lambda i: pass_permutation(key, current_pass + 1 + i, pool_size))(
            jnp.arange(num_later)
        )

    def no_later(_):
        return jnp.zeros((num_later, pool_size), jnp.int32)

    later = jax.lax.cond(offset + batch_size >= pool_size, draw_later, no_later, None)
    passes = jnp.concatenate([sampler.permutation[None], later])
    positions = passes.reshape(-1)[offset + jnp.arange(batch_size)]
    return EpochSampler(passes[(offset + batch_size) // pool_size]), positions


def create_samplers(samplings: dict, keys: dict, pools: dict) -> dict:
    """An EpochSampler per stream that samples in passes; random streams carry nothing.

    `samplings`, `keys` and `pools` map stream names to "random" or "epoch", their epoch keys
    and their pool sizes.
    """
    epoch_streams = [n for n, sampling in samplings.items() if sampling == "epoch"]
    missing = [n for n in epoch_streams if n not in pools]
    if missing:
        raise ValueError(f"epoch sampling of {missing} needs the pool sizes")
    return {name: create_epoch_sampler(keys[name], pools[name]) for name in epoch_streams}


def sample(samplers: dict, name: str, random_key, epoch_key, step, batch_size: int, pool):
    """(samplers, indices): a batch of `pool` items for stream `name`, random or in passes."""
    if name not in samplers:
        return samplers, pool[jax.random.randint(random_key, (batch_size,), 0, pool.shape[0])]
    sampler, positions = next_epoch_batch(samplers[name], epoch_key, step, batch_size)
    return {**samplers, name: sampler}, pool[positions]
