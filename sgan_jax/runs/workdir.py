"""A run's workdir: one writer at a time, the config it was started with, and its results.

The lock is an OS lock (`fcntl.flock`) on `workdir/.lock`: the kernel drops it when its process
dies, however it dies, so a killed run never leaves its workdir locked.
"""

import fcntl
import json
import math
import os
import time

from sgan_jax.runs import metrics, sharding
from sgan_jax.runs.errors import ConfigError

# Keys that say how or where a run executes, not what it computes: they may change when a run
# is continued (a sweep started on a laptop goes on on a GPU box). Changing them alters float
# rounding at most (conv_impl, num_devices, steps_per_dispatch) or what is logged and kept.
RUNTIME_KEYS = (
    "steps_per_dispatch",
    "num_devices",
    "conv_impl",
    "eval_batch_size",
    "checkpoint_every",
    "keep_checkpoints",
    "sample_every",
    "log_every",
    "data_dir",
    "manual_dir",
    "deterministic",
    "tensorboard",
)
CONFIG_FILE = "config.json"
CHANGES_FILE = "runtime_changes.json"


def config_dict(config) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def create(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ConfigError("workdir", f"cannot create {workdir}: {error.strerror}") from None
    if not os.access(workdir, os.W_OK):
        raise ConfigError("workdir", f"{workdir} is not writable")


class Lock:
    """Holds `workdir/.lock` for this process's lifetime; a second process is refused at once.

    Taking the lock changes no byte; `announce` writes who holds it, once the run starts writing.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self._file = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise ConfigError(
                "workdir", f"{workdir} is in use by {holder}; wait for it or stop it"
            ) from None

    def announce(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()  # closing drops the flock


def lock(workdir: str) -> Lock | None:
    """The workdir's lock; only the writing process (process 0) takes one."""
    return Lock(workdir) if sharding.is_primary() else None


def saved_config(workdir: str) -> dict | None:
    path = os.path.join(workdir, CONFIG_FILE)
    return metrics.read_json(path) if os.path.exists(path) else None


def compare(saved: dict, current: dict, comparable=lambda config: config) -> dict:
    """The runtime keys that differ between a saved config and the current one, as
    {key: [saved, current]}; raises ConfigError naming any other key that differs.

    `comparable` maps a config to what is compared: the keys that matter to its run, each at
    its default where the config predates the key (`sgan_jax.training.config.comparable`).
    """
    saved, current = comparable(saved), comparable(current)
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    changes = {k: [saved.get(k), current.get(k)] for k in differing if k in RUNTIME_KEYS}
    refused = [k for k in differing if k not in RUNTIME_KEYS and k != "num_iterations"]
    if refused:
        details = ", ".join(f"{k}={current.get(k)!r} (saved {saved.get(k)!r})" for k in refused)
        raise ConfigError(
            "config",
            f"differs from the workdir's {CONFIG_FILE} in {details}; use a new workdir to "
            "start over",
        )
    if "num_iterations" in differing and current.get("lr_decay_start", 1.0) < 1:
        raise ConfigError(
            "num_iterations",
            f"{current['num_iterations']} (saved {saved['num_iterations']}) with "
            f"lr_decay_start={current['lr_decay_start']}: the learning-rate schedule is built "
            "from num_iterations, so changing it would jump the rate; use a new workdir",
        )
    return changes


def check(workdir: str, config, comparable=lambda config: config) -> dict:
    """Checks `config` against the workdir's saved one (nothing is written); returns the
    runtime keys that changed. `comparable` is as `compare` takes it."""
    saved = saved_config(workdir)
    return {} if saved is None else compare(saved, config_dict(config), comparable)


def record(workdir: str, config, changes: dict, step: int) -> None:
    """Writes config.json (the config in force) and appends runtime-key changes to their log."""
    if not sharding.is_primary():
        return
    for folder in ("samples", "plots"):
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)
    metrics.atomic_write_json(os.path.join(workdir, CONFIG_FILE), config_dict(config))
    if changes:
        log = read_changes(workdir)
        log.append({"step": step, "time": time.time(), "changes": changes})
        metrics.atomic_write_json(os.path.join(workdir, CHANGES_FILE), log)


def read_changes(workdir: str) -> list[dict]:
    """Every change of runtime keys on resume: step, time and {key: [before, after]}."""
    path = os.path.join(workdir, CHANGES_FILE)
    return metrics.read_json(path) if os.path.exists(path) else []


def results(config, workdir: str, step: int, final_eval, baseline, best, summary) -> dict:
    """results.json: the run's accuracies, the baseline's, and `summary` (params, timing,
    provenance). `best` is the eval row with the best validation accuracy, if any."""
    out = dict(
        method=config.method,
        dataset=config.dataset,
        num_labeled=config.num_labeled,
        label_selection=config.label_selection,
        seed=config.seed,
        data_seed=config.data_seed,
        # Whether data_seed chose anything: the labels (balanced) or the validation images.
        # With label_selection=first and no validation split every seed trains on the same
        # images, whatever data_seed says.
        data_seed_applies=data_seed_applies(config),
        num_iterations=config.num_iterations,
        test_examples=config.test_examples,  # 0: the whole test split
        final_step=step,
        stopped_early=step < config.num_iterations,
        test_accuracy=final_eval["test_accuracy"],
        supervised_test_accuracy=baseline.get("test_accuracy"),
        runtime_key_changes=read_changes(workdir),
        **summary,
    )
    if config.num_validation:
        best = best or {}
        out.update(
            validation_accuracy=final_eval["validation_accuracy"],
            best_validation_accuracy=best.get("validation_accuracy"),
            best_validation_step=best.get("step"),
            selected_test_accuracy=best.get("test_accuracy"),
            supervised_validation_accuracy=baseline.get("validation_accuracy"),
            # The baseline chosen as the SGAN is, by the same validation split.
            selected_supervised_test_accuracy=baseline.get("selected_test_accuracy"),
            supervised_selected_epoch=baseline.get("selected_epoch"),
        )
    return out


def data_seed_applies(config) -> bool:
    return config["label_selection"] != "first" or config["num_validation"] > 0


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def print_table(results: dict) -> None:
    method = results["method"]
    rows = [(method, results["test_accuracy"])]
    if results.get("selected_test_accuracy") is not None:
        rows.append(
            (
                f"{method}, best validation (step {results['best_validation_step']})",
                results["selected_test_accuracy"],
            )
        )
    if results["supervised_test_accuracy"] is not None:
        rows.append(("supervised baseline", results["supervised_test_accuracy"]))
    width = max(len(name) for name, _ in rows)
    subset = results.get("test_examples")
    print(
        f"\n{results['dataset']}, {results['num_labeled']} labels, seed {results['seed']}, "
        f"{results['final_step']} iterations" + (f", first {subset} test images" if subset else "")
    )
    print(f"{'method'.ljust(width)}  test accuracy")
    for name, accuracy in rows:
        value = f"{100 * accuracy:.2f}%" if not math.isnan(accuracy) else "nan"
        print(f"{name.ljust(width)}  {value}", flush=True)
