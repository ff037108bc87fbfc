"""Orbax checkpoints of a state pytree: restore by leaf path, fallback, pruning, metadata.

A checkpoint is restored leaf by leaf, by path, into the structure of the state the code builds
now. So a field added to the state that holds no arrays (an empty container) still reads an
older checkpoint, while a real difference (a leaf missing, extra or reshaped) is reported by
name instead of being trained over.
"""

import errno
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from sgan_jax.runs import sharding
from sgan_jax.runs.errors import CheckpointError

# The space a checkpoint is given: its arrays' bytes, with room for orbax's metadata and index.
# A tutorial checkpoint holds 24.3 MB of arrays and took 22.3 MB on disk (measured 2026-12-02).
_SIZE_MARGIN = 1.05
_SIZE_EXTRA = 2**20


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


def _path_name(path) -> str:
    """'generator/params/Dense_0/kernel' for a dataclass, namedtuple, dict or list path: orbax
    saves every container as a dict or list, so only the names and indices are compared."""
    parts = []
    for entry in path:
        for attr in ("name", "key", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
    return "/".join(parts)


def _first_line(error: BaseException) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{type(error).__name__}: {line[:200]}"


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a state pytree under `directory` (all of them if
    `keep` is None)."""

    def __init__(self, directory: str, keep: int | None):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
            item_handlers=ocp.StandardCheckpointHandler(),
        )

    def steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, metadata: dict | None = None) -> None:
        """Saves `state` at `step`, with `metadata` (JSON) beside it."""
        saveable = _to_saveable(state)
        self._check_space(saveable)
        self._manager.save(
            step,
            args=ocp.args.StandardSave(saveable),
            force=True,
            custom_metadata=metadata or {},
        )
        self._manager.wait_until_finished()

    def _check_space(self, saveable) -> None:
        """Raises OSError(ENOSPC) before writing a checkpoint the storage cannot hold. A write
        that runs out of space midway would also fail, but orbax's threads then print a
        traceback for each array still in flight (a thousand lines, measured)."""
        needed = sum(x.nbytes for x in jax.tree.leaves(saveable)) * _SIZE_MARGIN + _SIZE_EXTRA
        free = shutil.disk_usage(self.directory).free if sharding.is_primary() else 0
        if jax.process_count() > 1:  # every process saves, or none: process 0's figure decides
            free = float(multihost_utils.broadcast_one_to_all(np.float32(free)))
        if free < needed:
            detail = f"{free / 2**20:.1f} MiB free, a checkpoint needs {needed / 2**20:.1f} MiB"
            raise OSError(errno.ENOSPC, detail, self.directory)

    def metadata(self, step: int) -> dict:
        """The JSON metadata saved with `step` ({} for checkpoints written without it)."""
        return dict(self._manager.metadata(step).custom_metadata or {})

    def restore(self, step: int, like):
        """The checkpoint at `step`, shaped and placed like the pytree `like`."""
        wanted_leaves, treedef = jax.tree_util.tree_flatten_with_path(_to_saveable(like))
        wanted = {_path_name(p): ocp.utils.to_shape_dtype_struct(x) for p, x in wanted_leaves}
        saved_tree = self._manager.item_metadata(step).tree
        saved = {_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
        if saved != set(wanted):
            missing, extra = sorted(set(wanted) - saved), sorted(saved - set(wanted))
            raise ValueError(
                "the state's structure differs from this code's"
                + (f"; missing {', '.join(missing[:3])}" if missing else "")
                + (f"; unexpected {', '.join(extra[:3])}" if extra else "")
            )
        target = jax.tree_util.tree_map_with_path(lambda p, _: wanted[_path_name(p)], saved_tree)
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        by_name = {_path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(restored)[0]}
        leaves = [by_name[_path_name(p)] for p, _ in wanted_leaves]
        return _from_saved(jax.tree_util.tree_unflatten(treedef, leaves), like)

    def restore_latest(self, like):
        """(state, step) from the newest checkpoint that restores, or (None, 0) if there is none.

        Newer checkpoints that do not restore (a torn write) are moved aside with a warning once
        an older one has restored. If checkpoints exist and none restores (the state's structure
        changed, or the storage fails), CheckpointError is raised and nothing is moved.
        """
        listed = self.steps()
        unlisted = [  # step folders orbax no longer recognises (torn metadata)
            int(name)
            for name in os.listdir(self.directory)
            if name.isdigit() and int(name) not in listed
        ]
        failures = {step: "unreadable metadata" for step in unlisted}
        for step in reversed(listed):
            try:
                state = self.restore(step, like)
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is skipped
                failures[step] = _first_line(error)
                continue
            for bad_step in sorted(s for s in failures if s > step):
                logging.warning(
                    "Checkpoint at step %d could not be restored (%s); moved to %s, resuming "
                    "from step %d.",
                    bad_step,
                    failures[bad_step],
                    self._set_aside(bad_step),
                    step,
                )
            return state, step
        if failures:
            newest = max(failures)
            raise CheckpointError(
                self.directory,
                f"no checkpoint restores (newest, step {newest}: {failures[newest]}); move "
                "the folder away to start over",
            )
        return None, 0

    def prune_after(self, step: int) -> None:
        """Deletes the checkpoints after `step`: a resume from `step` replays and rewrites them."""
        for later in self.steps():
            if later > step:
                self._manager.delete(later)

    def keep_newest_through(self, step: int) -> None:
        """Deletes the checkpoints older than the newest one at or before `step`."""
        kept = [s for s in self.steps() if s <= step]
        for older in kept[:-1]:
            self._manager.delete(older)

    def _set_aside(self, step: int) -> str:
        """Moves an unreadable checkpoint out of the manager's sight (kept for inspection)."""
        path = os.path.join(self.directory, str(step))
        aside = f"{path}.unreadable"
        if sharding.is_primary():
            os.replace(path, aside if not os.path.exists(aside) else f"{aside}.{time.time_ns()}")
        sharding.sync(f"sgan_jax:set_aside:{step}")
        self._manager.reload()
        return aside

    def close(self) -> None:
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def newest_saved_step(directories: list[str]) -> int | None:
    """The newest step that every one of `directories` holds a whole checkpoint of (orbax
    renames a checkpoint's folder to its step once written), or None."""
    common = None
    for directory in directories:
        names = os.listdir(directory) if os.path.isdir(directory) else []
        steps = {int(name) for name in names if name.isdigit()}
        common = steps if common is None else common & steps
    return max(common) if common else None


def restore_seeds(checkpointers: list[Checkpointer], states: list) -> tuple[list, int]:
    """Each seed's state at the newest step every seed can restore, and that step (0 and the
    given states when there is none). Seeds trained together were checkpointed together; if a
    kill left them at different steps, the newest common one is used."""
    restored = [c.restore_latest(s) for c, s in zip(checkpointers, states, strict=True)]
    if len({step for _, step in restored}) > 1:
        common = set.intersection(*(set(c.steps()) for c in checkpointers))
        if not common:
            raise CheckpointError(
                checkpointers[0].directory, "the seeds' checkpoints have no step in common"
            )
        step = max(common)
        restored = [(c.restore(step, s), step) for c, s in zip(checkpointers, states, strict=True)]
    step = restored[0][1]
    if restored[0][0] is None:
        return states, 0
    return [state for state, _ in restored], step
