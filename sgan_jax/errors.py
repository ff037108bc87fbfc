"""Errors that end a run with a one-line message instead of a traceback."""


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


class RunsFailed(RuntimeError):
    """Runs of a sweep run as separate processes (--jobs) ended with an error."""

    def __init__(self, names: list[str]):
        super().__init__(f"runs failed: {', '.join(names)} (each has a train.log in its folder)")
        self.names = names
