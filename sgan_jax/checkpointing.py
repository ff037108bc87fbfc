"""Orbax checkpoints of a state pytree, restoring the newest one that reads back whole."""

import os
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

from sgan_jax import sharding


def _to_saveable(state):
    # Typed PRNG keys are stored as their raw uint32 data.
    return jax.tree.map(
        lambda x: (
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        ),
        state,
    )


def _from_saved(saved, like):
    return jax.tree.map(
        lambda s, x: (
            jax.random.wrap_key_data(s, impl=jax.random.key_impl(x))
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            else s
        ),
        saved,
        like,
    )


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a state pytree under `directory`."""

    def __init__(self, directory: str, keep: int):
        self._directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self._directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )

    def steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(_to_saveable(state)), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, like):
        """The checkpoint at `step`, shaped and placed like the pytree `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(like))
        saved = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return _from_saved(saved, like)

    def restore_latest(self, like):
        """(state, step) from the newest checkpoint that restores, or (None, 0) if none does.

        A corrupt or half-written newest checkpoint is skipped with a warning, falling back to
        the one before it.
        """
        listed = set(self.steps())
        for name in os.listdir(self._directory):
            if name.isdigit() and int(name) not in listed:
                # Orbax itself no longer recognises it (torn metadata).
                logging.warning(
                    "Checkpoint at step %s could not be restored (unreadable metadata); moved to "
                    "%s, trying an older one.",
                    name,
                    self._set_aside(int(name)),
                )
        for step in reversed(self.steps()):
            try:
                return self.restore(step, like), step
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is skipped
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                logging.warning(
                    "Checkpoint at step %d could not be restored (%s: %s); moved to %s, "
                    "trying an older one.",
                    step,
                    type(error).__name__,
                    first_line[:200],
                    self._set_aside(step),
                )
        return None, 0

    def _set_aside(self, step: int) -> str:
        """Moves an unreadable checkpoint out of the manager's sight (kept for inspection)."""
        path = os.path.join(self._directory, str(step))
        aside = f"{path}.unreadable"
        if sharding.is_primary():
            os.replace(path, aside if not os.path.exists(aside) else f"{aside}.{time.time_ns()}")
        sharding.sync(f"sgan_jax:set_aside:{step}")
        self._manager.reload()
        return aside

    def close(self) -> None:
        self._manager.close()
