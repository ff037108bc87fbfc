"""Label-budget sweeps: SGAN and the supervised baseline for every (num_labeled, seed).

Each run gets its own subfolder of the sweep's workdir, with everything `train.py` writes. A
run whose results.json exists for the same config is skipped; an unfinished one resumes from its
checkpoints. The sweep writes results.csv, summary.md and accuracy_vs_labels.png.
"""

import collections
import csv
import io
import json
import os
import time

import numpy as np
from absl import logging

from sgan_jax import metrics, plots, sharding, train
from sgan_jax.errors import ConfigError

CSV_COLUMNS = ("num_labeled", "seed", "method", "test_accuracy", "wall_seconds")


def run_name(num_labeled: int, seed: int) -> str:
    return f"labels{num_labeled}_seed{seed}"


def run_config(base_config, num_labeled: int, seed: int, vary_data_seed: bool):
    config = base_config.copy_and_resolve_references()
    with config.unlocked():
        config.num_labeled = num_labeled
        config.seed = seed
        if vary_data_seed:
            config.data_seed = seed  # a fresh labeled set per seed, for honest error bars
    return config


def is_finished(workdir: str, config) -> bool:
    """True if workdir holds the results of this very config."""
    try:
        saved = metrics.read_json(os.path.join(workdir, "config.json"))
        results = metrics.read_json(os.path.join(workdir, "results.json"))
    except (OSError, json.JSONDecodeError):
        return False
    return (
        saved == json.loads(json.dumps(config.to_dict()))
        and results.get("num_iterations") == config.num_iterations
    )


def collect_rows(workdir: str, budgets, seeds) -> list[dict]:
    """results.csv rows for the finished runs."""
    rows = []
    for num_labeled in budgets:
        for seed in seeds:
            folder = os.path.join(workdir, run_name(num_labeled, seed))
            path = os.path.join(folder, "results.json")
            if not os.path.exists(path):
                continue
            results = metrics.read_json(path)
            baseline_path = os.path.join(folder, "supervised.json")
            baseline = metrics.read_json(baseline_path) if os.path.exists(baseline_path) else {}
            sgan_seconds = results["wall_seconds"] - baseline.get("wall_seconds", 0.0)
            rows.append(
                dict(
                    num_labeled=num_labeled,
                    seed=seed,
                    method="sgan",
                    test_accuracy=results["test_accuracy"],
                    wall_seconds=sgan_seconds,
                )
            )
            if results.get("supervised_test_accuracy") is not None:
                rows.append(
                    dict(
                        num_labeled=num_labeled,
                        seed=seed,
                        method="supervised",
                        test_accuracy=results["supervised_test_accuracy"],
                        wall_seconds=baseline.get("wall_seconds", float("nan")),
                    )
                )
    return rows


def summarise(rows: list[dict]) -> dict:
    """summary[method][num_labeled] = (mean, std, n) of test accuracy; std with ddof=1."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row["method"], {}).setdefault(row["num_labeled"], []).append(
            row["test_accuracy"]
        )
    return {
        method: {
            budget: (
                float(np.mean(values)),
                float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                len(values),
            )
            for budget, values in by_budget.items()
        }
        for method, by_budget in groups.items()
    }


def summary_markdown(summary: dict, title: str) -> str:
    budgets = sorted({b for by_budget in summary.values() for b in by_budget})
    methods = sorted(summary)
    lines = [
        f"# {title}",
        "",
        "Test accuracy, mean ± std over seeds (n runs).",
        "",
        "| labels | " + " | ".join(methods) + " |",
        "|---:|" + "---:|" * len(methods),
    ]
    for budget in budgets:
        cells = []
        for method in methods:
            if budget in summary[method]:
                mean, std, n = summary[method][budget]
                cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}% (n={n})")
            else:
                cells.append("–")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_results_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return [
            dict(
                num_labeled=int(row["num_labeled"]),
                seed=int(row["seed"]),
                method=row["method"],
                test_accuracy=float(row["test_accuracy"]),
                wall_seconds=float(row["wall_seconds"]),
            )
            for row in csv.DictReader(f)
        ]


def merge_sweeps(sweep_dirs, workdir: str, title: str) -> dict:
    """One results.csv, summary.md and plot from the results.csv of several sweeps, e.g. the
    small budgets and the all-label upper bound, run with different settings or machines."""
    rows = []
    for sweep_dir in sweep_dirs:
        path = os.path.join(sweep_dir, "results.csv")
        if not os.path.exists(path):
            raise ConfigError("sweeps", f"{path} does not exist")
        rows += read_results_csv(path)
    counts = collections.Counter((r["num_labeled"], r["seed"], r["method"]) for r in rows)
    repeated = sorted(key for key, count in counts.items() if count > 1)
    if repeated:
        raise ConfigError("sweeps", f"(num_labeled, seed, method) {repeated[0]} is in two sweeps")
    train.create_workdir(workdir)
    rows.sort(key=lambda r: (r["num_labeled"], r["seed"], r["method"]))
    summary = write_outputs(workdir, rows, title)
    print(summary_markdown(summary, title), flush=True)
    return summary


def write_outputs(workdir: str, rows: list[dict], title: str) -> dict:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    metrics.atomic_write_text(os.path.join(workdir, "results.csv"), buffer.getvalue())
    summary = summarise(rows)
    metrics.atomic_write_text(os.path.join(workdir, "summary.md"), summary_markdown(summary, title))
    plots.plot_accuracy_vs_labels(summary, os.path.join(workdir, "accuracy_vs_labels.png"), title)
    return summary


def run_sweep(
    base_config,
    workdir: str,
    budgets,
    seeds,
    vectorize_seeds: bool = False,
    vary_data_seed: bool = True,
) -> dict:
    """Trains every missing (num_labeled, seed) run, then writes the sweep's three files."""
    train.create_workdir(workdir)
    groups = []  # runs trained in one go: one seed each, or all seeds of a budget together
    for num_labeled in budgets:
        pending = []
        for seed in seeds:
            config = run_config(base_config, num_labeled, seed, vary_data_seed)
            folder = os.path.join(workdir, run_name(num_labeled, seed))
            if is_finished(folder, config):
                print(f"skip {run_name(num_labeled, seed)}: finished", flush=True)
            else:
                pending.append((config, folder))
        if vectorize_seeds and pending:
            groups.append(pending)
        else:
            groups.extend([run] for run in pending)
    total = sum(len(g) for g in groups)
    done, started = 0, time.time()
    for group in groups:
        configs, folders = zip(*group, strict=True)
        names = ", ".join(os.path.basename(f) for f in folders)
        eta = ""
        if done:
            eta = f", ETA {train._format_duration((time.time() - started) / done * (total - done))}"
        print(f"run {done + 1}/{total}{eta}: {names}", flush=True)
        logging.info("Sweep: run %d/%d: %s", done + 1, total, names)
        if len(group) > 1:
            train.train_and_evaluate_seeds(list(configs), list(folders))
        else:
            train.train_and_evaluate(configs[0], folders[0])
        done += len(group)
    rows = collect_rows(workdir, budgets, seeds)
    title = (
        f"{base_config.dataset}: {base_config.model} recipe, "
        f"{base_config.num_iterations} iterations"
    )
    if not sharding.is_primary():  # in a multi-process sweep, process 0 writes the files
        return summarise(rows)
    summary = write_outputs(workdir, rows, title)
    print(summary_markdown(summary, title), flush=True)
    return summary
