"""Data parallelism over local devices with `jax.sharding`: batches split, parameters replicated.

Multi-host: call `jax.distributed.initialize()` on every host before anything else touches JAX;
`jax.devices()` then spans all hosts and the same code runs data-parallel across them.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sgan_jax.errors import ConfigError

AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (0: all of them)."""
    available = jax.devices()
    if num_devices > len(available):
        raise ConfigError("num_devices", f"{num_devices} asked for, {len(available)} available")
    return Mesh(np.array(available[: num_devices or len(available)]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def make_shard_batch(mesh: Mesh):
    """Inside jit: splits a batch's leading axis over the mesh (identity on one device)."""
    if mesh.size == 1:
        return lambda x: x
    sharding = batch_sharded(mesh)
    return lambda x: jax.lax.with_sharding_constraint(x, sharding)


def replicate(tree, mesh: Mesh):
    """Places every leaf of `tree` on all devices of the mesh."""
    return jax.device_put(tree, replicated(mesh))
