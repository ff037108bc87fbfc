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
