"""How a run ends early: errors with a one-line message instead of a traceback, and the clean
stop on a signal.

The signals are SIGTERM (preemption, Slurm's time limit, `docker stop`) and SIGINT.

During training a signal only sets a flag: the loop finishes the dispatch it is in, saves a
checkpoint at that step and ends with `Preempted` (exit status 75, "try again"); the same command
resumes from that step exactly. Before and after training there is nothing unsaved, so a signal
ends the process at once, with the same status.

With several processes (`--distributed`), they must stop at the same step. jax's preemption
service (`multihost_utils.reached_preemption_sync_point`) owns SIGTERM there: it tells every
process about a notice any of them received and names the dispatch at which all of them stop.
SIGINT is handed to it as a SIGTERM.
"""

import contextlib
import errno
import os
import signal

import jax
from jax.experimental import multihost_utils


class ConfigError(ValueError):
    """A bad input: `key` names the config key (or flag) at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class NonFiniteError(RuntimeError):
    """A loss went NaN or infinite; the checkpoints on disk are all from before it."""

    def __init__(self, step: int, metric: str, value: float, last_good_checkpoint: int | None):
        kept = (
            f"last good checkpoint: step {last_good_checkpoint}"
            if last_good_checkpoint is not None
            else "no checkpoint was saved before it"
        )
        super().__init__(f"non-finite {metric} ({value}) at step {step}; stopped ({kept})")
        self.step = step
        self.metric = metric


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be used; nothing in the workdir was changed."""

    def __init__(self, directory: str, message: str):
        super().__init__(f"checkpoints: {directory}: {message}")
        self.directory = directory


class Preempted(RuntimeError):
    """A stop signal ended the run; everything trained is in the checkpoint at `step`."""

    def __init__(self, signal_name: str, step: int | None):
        saved = (
            f"checkpoint saved at step {step}"
            if step is not None
            else "nothing unsaved (the checkpoints on disk are current)"
        )
        super().__init__(f"stopped by {signal_name}; {saved}; run the same command to resume")
        self.step = step


class NoSpace(RuntimeError):
    """The storage is full or over its quota. What is on disk is whole (checkpoints are
    renamed into place once written), so freeing space and running the same command resumes."""

    def __init__(self, reason: str, where: str, resume_step: int | None):
        then = "it starts over" if resume_step is None else f"it resumes from step {resume_step}"
        super().__init__(f"{reason}: {where}; free some, then run the same command: {then}")
        self.resume_step = resume_step


# A full disk (ENOSPC) and an exceeded quota (EDQUOT). Python reports them as OSError; orbax
# writes arrays through tensorstore, whose errors arrive as ValueError text ending in
# "[os_error_code='28']".
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def no_space(error: BaseException | None) -> tuple[str, str] | None:
    """(reason, where) when `error`, or an error it was raised from, says the storage is full
    or over quota; `where` is empty when the error names no path."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS:
            where = str(error.filename or "")
            if error.strerror and error.strerror != os.strerror(error.errno):
                where = f"{where} ({error.strerror})"  # the figures of Checkpointer's own check
            return os.strerror(error.errno).lower(), where
        for code in _NO_SPACE_ERRNOS:
            if f"os_error_code='{code}'" in str(error):
                return os.strerror(code).lower(), ""
        # The chain Python would print: a `raise ... from None` ends it.
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


@contextlib.contextmanager
def reporting_no_space(workdir: str, resume_step):
    """Turns a full disk or quota met in the block into NoSpace, naming the step a rerun
    resumes from (`resume_step()`, read only then)."""
    try:
        yield
    except NoSpace:
        raise
    except Exception as error:
        found = no_space(error)
        if found is None:
            raise
        reason, where = found
        raise NoSpace(reason, where or workdir, resume_step()) from error


class RunsFailed(RuntimeError):
    """Runs of a sweep run as separate processes (--jobs) ended with an error."""

    def __init__(self, names: list[str]):
        super().__init__(f"runs failed: {', '.join(names)} (each has a train.log in its folder)")
        self.names = names


SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """Installs the handlers for its lifetime (a context manager)."""

    def __init__(self):
        self.signal_name = None
        self.during_training = False
        self._multi_process = jax.process_count() > 1
        self._dispatches = 0
        self._previous = {}

    def __enter__(self):
        for sig in SIGNALS:
            if self._multi_process and sig == signal.SIGTERM:
                continue  # jax's preemption notifier handles it
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        first = self.signal_name is None
        self.signal_name = signal.Signals(signum).name
        if not self.during_training or not first:
            raise Preempted(self.signal_name, None)  # nothing unsaved, or a second signal
        if self._multi_process:
            os.kill(os.getpid(), signal.SIGTERM)  # to jax's notifier, which agrees the step

    def should_stop(self) -> bool:
        """Called after every dispatch, the same number of times in every process."""
        self._dispatches += 1
        if self._multi_process:
            stop = multihost_utils.reached_preemption_sync_point(self._dispatches)
            if stop and self.signal_name is None:
                self.signal_name = "SIGTERM"  # received by jax's notifier, here or elsewhere
            return stop
        return self.signal_name is not None
