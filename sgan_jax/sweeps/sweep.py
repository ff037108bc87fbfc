"""Label-budget sweeps: SGAN and the supervised baseline for every (num_labeled, seed).

Each run gets its own subfolder of the sweep's workdir, with everything `train.py` writes. A
run whose results.json exists for the same config is skipped; an unfinished one resumes from its
checkpoints. The sweep writes results.csv, summary.md and accuracy_vs_labels.png.
"""

import dataclasses
import functools
import json
import os
import sys
import time

import jax
from absl import logging

from sgan_jax.runs import metrics, sharding
from sgan_jax.runs import workdir as workdir_lib
from sgan_jax.runs.errors import ConfigError
from sgan_jax.sweeps import jobs, sweep_results
from sgan_jax.sweeps import summary as summary_lib
from sgan_jax.training import config as config_lib
from sgan_jax.training import train


def run_config(base_config, num_labeled: int, seed: int, vary_data_seed: bool):
    config = base_config.copy_and_resolve_references()
    with config.unlocked():
        config.num_labeled = num_labeled
        config.seed = seed
        if vary_data_seed:
            config.data_seed = seed  # a fresh labeled set per seed, for honest error bars
    return config


def is_finished(run_dir: str, config) -> bool:
    """True if run_dir holds the finished results of this config (runtime keys aside, as a
    resume would compare them)."""
    try:
        saved = workdir_lib.saved_config(run_dir)
        results = metrics.read_json(os.path.join(run_dir, "results.json"))
    except (OSError, json.JSONDecodeError):
        return False
    if saved is None or results.get("num_iterations") != config.num_iterations:
        return False
    try:
        workdir_lib.compare(saved, workdir_lib.config_dict(config), config_lib.comparable)
    except ConfigError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Options:
    """How a sweep runs: vmapped seeds, several runs at once, or one shard of the run list."""

    vectorize_seeds: bool = False
    vary_data_seed: bool = True
    jobs: int = 1
    num_shards: int = 1
    shard_index: int = 0
    # For jobs > 1: the config file and its --config.KEY=VALUE overrides, as train.py takes them.
    config_file: str | None = None
    config_overrides: tuple = ()

    def check(self) -> None:
        if self.jobs < 1:
            raise ConfigError("jobs", f"must be >= 1; got {self.jobs}")
        if self.num_shards < 1:
            raise ConfigError("num_shards", f"must be >= 1; got {self.num_shards}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(
                "shard_index", f"must be in [0, {self.num_shards}); got {self.shard_index}"
            )
        if self.jobs > 1 and self.vectorize_seeds:
            raise ConfigError("jobs", "runs separate processes; it does not vmap seeds")
        if self.jobs > 1 and jax.process_count() > 1:
            raise ConfigError("jobs", "is for one host; spread hosts with --num_shards")


def plan(base_config, workdir: str, budgets, seeds, options: Options) -> list[tuple]:
    """This shard's (config, run folder) pairs, in a fixed order: budgets, then seeds. Shard i of
    n takes every n-th run from the i-th, so shards are disjoint and together the whole sweep."""
    runs = [
        (
            run_config(base_config, num_labeled, seed, options.vary_data_seed),
            os.path.join(workdir, sweep_results.run_name(num_labeled, seed)),
        )
        for num_labeled in budgets
        for seed in seeds
    ]
    return runs[options.shard_index :: options.num_shards]


def run_sweep(base_config, workdir: str, budgets, seeds, options: Options = Options()) -> None:
    """Trains every missing run of this shard. The sweep's files for its runs are rewritten as
    each run ends, so a sweep stopped part-way has the tables of what finished."""
    options.check()
    workdir_lib.create(workdir)
    finished, pending = _split_plan(base_config, workdir, budgets, seeds, options)
    for name in finished:
        print(f"skip {name}: finished", flush=True)
    write = functools.partial(_write_files, base_config, workdir, budgets, seeds, options)
    if options.jobs > 1:
        _run_in_processes(pending, options, write)
    else:
        _run_in_process(pending, options.vectorize_seeds, write)
    text = write()
    if text is not None:
        print(text, flush=True)


def print_status(base_config, workdir: str, budgets, seeds, options: Options = Options()) -> None:
    """Prints this shard's tables as summary.md has them, with a line for every unfinished run
    too: its latest step and test accuracy, and the best validation so far. Writes nothing."""
    options.check()
    if not os.path.isdir(workdir):
        raise ConfigError("workdir", f"{workdir} does not exist")
    finished, unfinished = _split_plan(base_config, workdir, budgets, seeds, options)
    rows, _ = sweep_results.collect_rows(workdir, budgets, seeds, only=set(finished))
    progress_rows = [sweep_results.progress_row(folder, c) for c, folder in unfinished]
    summary = summary_lib.summarise(rows)
    text = summary_lib.sweep_markdown(summary, rows, _title(base_config), progress_rows)
    print(text, flush=True)


def _title(base_config) -> str:
    return (
        f"{base_config.dataset}: {base_config.method} ({base_config.model} networks), "
        f"{base_config.num_iterations} iterations"
    )


def _split_plan(base_config, workdir: str, budgets, seeds, options: Options):
    """This shard's runs in plan order: the names of those finished with this config (a
    results.json of an older config, e.g. fewer iterations, does not count), and the
    (config, folder) pairs of the rest."""
    finished, unfinished = [], []
    for config, folder in plan(base_config, workdir, budgets, seeds, options):
        if is_finished(folder, config):
            finished.append(os.path.basename(folder))
        else:
            unfinished.append((config, folder))
    return finished, unfinished


def _write_files(base_config, workdir: str, budgets, seeds, options: Options) -> str | None:
    """results.csv, summary.md and the plots of this shard's finished runs; summary.md's text."""
    finished, _ = _split_plan(base_config, workdir, budgets, seeds, options)
    rows, curves = sweep_results.collect_rows(workdir, budgets, seeds, only=set(finished))
    if not rows or not sharding.is_primary():  # in a multi-process sweep, process 0 writes
        return None
    return sweep_results.write_outputs(workdir, rows, curves, _title(base_config))


def iterations_left(config, folder: str) -> int:
    """A run's iterations still to train, from the last step it logged (a resume replays at
    most a checkpoint interval): a resumed run must not count as a whole one in the ETA."""
    rows = metrics.read_rows(os.path.join(folder, "metrics.jsonl"))
    return config.num_iterations - (rows[-1]["step"] if rows else 0)


def _run_in_process(pending, vectorize_seeds: bool, on_end) -> None:
    groups = []  # runs trained in one go: one seed each, or all seeds of a budget together
    for config, folder in pending:
        if vectorize_seeds and groups and groups[-1][0][0].num_labeled == config.num_labeled:
            groups[-1].append((config, folder))
        else:
            groups.append([(config, folder)])
    left = [max(iterations_left(c, f) for c, f in group) for group in groups]
    total = sum(len(g) for g in groups)
    done, trained, started = 0, 0, time.time()
    for i, group in enumerate(groups):
        configs, folders = zip(*group, strict=True)
        names = ", ".join(os.path.basename(f) for f in folders)
        eta = ""
        if trained:
            remaining = (time.time() - started) / trained * sum(left[i:])
            eta = f", ETA {workdir_lib.format_duration(remaining)}"
        print(f"run {done + 1}/{total}{eta}: {names}", flush=True)
        logging.info("Sweep: run %d/%d: %s", done + 1, total, names)
        train.train_and_evaluate_seeds(list(configs), list(folders))
        done += len(group)
        trained += left[i]
        on_end()


def _run_in_processes(pending, options: Options, on_end) -> None:
    """Each run as a train.py process, `options.jobs` at a time, one per slot."""
    slots = jobs.make_slots(options.jobs, *jobs.probe_devices())
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(repo, "experiments", "train.py")
    runs = []
    for config, folder in pending:
        workdir_lib.create(folder)
        command = [
            sys.executable,
            script,
            f"--workdir={folder}",
            f"--config={options.config_file}",
            *options.config_overrides,
            f"--config.num_labeled={config.num_labeled}",
            f"--config.seed={config.seed}",
            f"--config.data_seed={config.data_seed}",
        ]
        runs.append((os.path.basename(folder), command, os.path.join(folder, "train.log")))
    jobs.run_all(runs, slots, on_end)
