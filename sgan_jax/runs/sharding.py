"""Data parallelism with `jax.sharding`: batches split over the devices, parameters replicated,
on one host or several.

Several hosts (processes): every process runs the same command after
`initialize_distributed(...)` (the `--distributed` flag). `jax.devices()` then spans all
processes, arrays are built as global arrays from the identical host data each process holds,
and only process 0 writes files. The workdir must be storage every process sees.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sgan_jax.runs.errors import ConfigError

AXIS = "data"


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None):
    """`jax.distributed.initialize`; arguments left None are detected (SLURM, Open MPI, TPU) or
    read from $JAX_COORDINATOR_ADDRESS. CPU processes talk over gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_primary() -> bool:
    """True in the process that writes the run's files."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """All processes wait here for each other (a no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def make_mesh(num_devices: int = 0, num_seeds: int = 1) -> Mesh:
    """A 1-D mesh for `num_seeds` seeds trained together.

    `num_devices` N > 0: the first N of this process's local devices. 0 (automatic): with
    several processes, every device of every process (the batch is split over all of them);
    in one process, one device for one seed, since these small networks gain less from a split
    batch than they pay in communication, and for several seeds the most local devices that
    divide them evenly, one group of seeds per device.
    """
    if jax.process_count() > 1:
        if num_devices not in (0, jax.device_count()):
            raise ConfigError(
                "num_devices",
                f"must be 0 (all {jax.device_count()} devices) with several processes",
            )
        return Mesh(np.array(jax.devices()), (AXIS,))
    local = jax.local_devices()
    if num_devices > len(local):
        raise ConfigError("num_devices", f"{num_devices} asked for, {len(local)} available")
    if not num_devices:
        num_devices = max(d for d in range(1, len(local) + 1) if num_seeds % d == 0)
    return Mesh(np.array(local[:num_devices]), (AXIS,))


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


def _global_array(x, sharding: NamedSharding):
    """`x` (the same on every process) as an array with `sharding` over all processes."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _global_array(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree, mesh: Mesh):
    """Places every leaf of `tree` on all devices of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def split_leading_axis(tree, mesh: Mesh):
    """Places every leaf of `tree` with its leading axis split over the mesh."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def to_host(tree):
    """NumPy copies of (global) arrays, gathered from every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
