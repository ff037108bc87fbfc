"""A sweep's tables: results.csv and curves.csv rows from the runs' files, mean ± std per label
budget and a line per run (summary.md, and `sweep.py --status` while runs are unfinished), the
plots, and merging several sweeps into one.
"""

import collections
import csv
import io
import os

import numpy as np

from sgan_jax.runs import metrics, plots
from sgan_jax.runs import workdir as workdir_lib
from sgan_jax.runs.errors import ConfigError
from sgan_jax.training import progress

# The first five are the original columns; later ones are appended, so readers keep working.
CSV_COLUMNS = (
    "num_labeled",
    "seed",
    "method",
    "test_accuracy",
    "wall_seconds",
    "label_selection",
    "final_step",
    "selected_test_accuracy",  # at the best validation step (with a validation split)
    "selected_step",
    "git_commit",  # what ran, and where: a CPU run repeats bit for bit only on the same cores
    "machine",
    "cpu_cores_usable",
)
CURVE_KEYS = ("step", "test_accuracy", "validation_accuracy")
CURVE_COLUMNS = ("num_labeled", "seed", "label_selection", *CURVE_KEYS)
SELECTED = "sgan, validation-selected"


def run_name(num_labeled: int, seed: int) -> str:
    return f"labels{num_labeled}_seed{seed}"


def collect_rows(workdir: str, budgets, seeds, only=None) -> tuple[list[dict], list[dict]]:
    """results.csv rows for the finished runs (those named in `only`, if given), and their
    curves.csv rows (accuracy per eval)."""
    rows, curves = [], []
    for num_labeled in budgets:
        for seed in seeds:
            if only is not None and run_name(num_labeled, seed) not in only:
                continue
            folder = os.path.join(workdir, run_name(num_labeled, seed))
            if os.path.exists(os.path.join(folder, "results.json")):
                run_rows = _run_rows(folder, num_labeled, seed)
                rows += run_rows
                curves += [
                    dict(
                        num_labeled=num_labeled,
                        seed=seed,
                        label_selection=run_rows[0]["label_selection"],
                        **{k: r.get(k) for k in CURVE_KEYS},
                    )
                    for r in metrics.read_rows(os.path.join(folder, "metrics.jsonl"))
                    if "test_accuracy" in r
                ]
    return rows, curves


def _run_rows(folder: str, num_labeled: int, seed: int) -> list[dict]:
    results = metrics.read_json(os.path.join(folder, "results.json"))
    baseline_path = os.path.join(folder, "supervised.json")
    baseline = metrics.read_json(baseline_path) if os.path.exists(baseline_path) else {}
    host = results.get("host") or {}  # absent in runs from before it was recorded
    common = dict(
        num_labeled=num_labeled,
        seed=seed,
        label_selection=results.get("label_selection"),
        git_commit=results.get("git_commit"),
        # The accelerator's kind; on CPU ("cpu") the processor's name.
        machine=host.get("cpu_model") if results.get("device") == "cpu" else results.get("device"),
        cpu_cores_usable=host.get("cpu_cores_usable"),
    )
    rows = [
        dict(
            common,
            method="sgan",
            test_accuracy=results["test_accuracy"],
            wall_seconds=results["wall_seconds"] - baseline.get("wall_seconds", 0.0),
            final_step=results["final_step"],
            selected_test_accuracy=results.get("selected_test_accuracy"),
            selected_step=results.get("best_validation_step"),
        )
    ]
    if results.get("supervised_test_accuracy") is not None:
        rows.append(
            dict(
                common,
                method="supervised",
                test_accuracy=results["supervised_test_accuracy"],
                wall_seconds=baseline.get("wall_seconds", float("nan")),
            )
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    """summary[method][num_labeled] = (mean, std, n) of test accuracy; std with ddof=1. Rows of
    several label selections (merged sweeps) are kept apart: "sgan, first labels"."""
    groups: dict = {}
    selections = {row.get("label_selection") for row in rows}

    def add(method, row, value):
        if len(selections) > 1:
            method = f"{method}, {row.get('label_selection')} labels"
        groups.setdefault(method, {}).setdefault(row["num_labeled"], []).append(value)

    for row in rows:
        add(row["method"], row, row["test_accuracy"])
        if row.get("selected_test_accuracy") is not None:
            add(SELECTED, row, row["selected_test_accuracy"])
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
                # One run has no spread: "± 0.00%" would read as a measured one.
                spread = f" ± {100 * std:.2f}" if n > 1 else ""
                cells.append(f"{100 * mean:.2f}{spread}% (n={n})")
            else:
                cells.append("–")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def progress_row(folder: str, config) -> dict:
    """An unfinished run's line for the per-run table, from its metrics.jsonl: the latest step,
    the latest test accuracy, and the best validation so far, chosen as the finished run will."""
    rows = metrics.read_rows(os.path.join(folder, "metrics.jsonl"))
    evals = [row for row in rows if "test_accuracy" in row]
    best = progress.EvalTracker(rows, patience=0).best or {}
    return dict(
        num_labeled=config.num_labeled,
        seed=config.seed,
        method="sgan",
        label_selection=config.label_selection,
        num_iterations=config.num_iterations,
        latest_step=rows[-1]["step"] if rows else None,
        test_accuracy=evals[-1]["test_accuracy"] if evals else None,
        test_step=evals[-1]["step"] if evals else None,
        selected_test_accuracy=best.get("test_accuracy"),
        selected_step=best.get("step"),
    )


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _iterations(row: dict) -> str:
    if row.get("final_step") is not None:
        return f"{row['final_step']:,}"
    if row.get("latest_step") is None:
        return "not started"
    return f"{row['latest_step']:,} of {row['num_iterations']:,}, unfinished"


def runs_markdown(rows: list[dict]) -> str:
    """A line per SGAN run: iterations, test accuracy (the latest eval's, with its step, for an
    unfinished run), the validation-selected accuracy and its step, and the baseline."""

    def key(row):
        return (row["num_labeled"], row["seed"], row.get("label_selection") or "")

    baselines = {key(r): r["test_accuracy"] for r in rows if r["method"] == "supervised"}
    lines = [
        "| labels | seed | label selection | iterations | test accuracy "
        "| validation-selected (step) | supervised |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in sorted((r for r in rows if r["method"] == "sgan"), key=key):
        test = _percent(row["test_accuracy"])
        if row.get("test_step") is not None:
            test += f" at {row['test_step']:,}"
        selected = _percent(row.get("selected_test_accuracy"))
        if row.get("selected_step") is not None:
            selected += f" ({row['selected_step']:,})"
        cells = [row["num_labeled"], row["seed"], row.get("label_selection") or "–"]
        cells += [_iterations(row), test, selected, _percent(baselines.get(key(row)))]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_markdown(summary: dict, rows: list[dict], title: str, unfinished=()) -> str:
    """summary.md: mean ± std (`summary`, of the finished runs' `rows`), then a line per run,
    finished or not (`unfinished`: progress_row lines, for `sweep.py --status`)."""
    if rows:
        head = summary_markdown(summary, title)
    else:
        head = f"# {title}\n\nNo run has finished yet.\n"
    tail = provenance_markdown(rows) if rows else ""
    return head + "\nPer run:\n\n" + runs_markdown([*rows, *unfinished]) + tail


def provenance_markdown(rows: list[dict]) -> str:
    """The finished runs by commit, machine and usable CPU cores, with their numbers."""
    counts = collections.Counter(
        (r.get("git_commit") or "unknown", r.get("machine") or "unknown", r.get("cpu_cores_usable"))
        for r in rows
        if r["method"] == "sgan"
    )
    lines = ["", "Ran on:", ""]
    for (commit, machine, cores), count in sorted(counts.items(), key=str):
        runs = f"{count} run" + ("s" if count > 1 else "")
        lines.append(f"- commit {commit}, {machine}, usable CPU cores {cores or '?'}: {runs}")
    return "\n".join(lines) + "\n"


def _parse(value: str, kind):
    return kind(value) if value not in ("", None) else None


def read_results_csv(path: str) -> list[dict]:
    """results.csv rows; columns an older sweep did not write read as None."""
    kinds = dict(num_labeled=int, seed=int, test_accuracy=float, wall_seconds=float)
    kinds.update(final_step=int, selected_test_accuracy=float, selected_step=int)
    kinds.update(cpu_cores_usable=int)
    with open(path, newline="") as f:
        return [
            {key: _parse(row.get(key), kinds.get(key, str)) for key in CSV_COLUMNS}
            for row in csv.DictReader(f)
        ]


def read_curves_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    kinds = dict(num_labeled=int, seed=int, step=int, label_selection=str)
    with open(path, newline="") as f:
        return [
            {key: _parse(row.get(key), kinds.get(key, float)) for key in CURVE_COLUMNS}
            for row in csv.DictReader(f)
        ]


def merge_sweeps(sweep_dirs, workdir: str, title: str) -> None:
    """One results.csv, summary.md and plot from the results.csv of several sweeps, e.g. the
    small budgets and the all-label upper bound, run with different settings or machines."""
    rows = []
    for sweep_dir in sweep_dirs:
        path = os.path.join(sweep_dir, "results.csv")
        if not os.path.exists(path):
            raise ConfigError("sweeps", f"{path} does not exist")
        rows += read_results_csv(path)
    counts = collections.Counter(
        (r["num_labeled"], r["seed"], r["method"], r["label_selection"] or "") for r in rows
    )
    repeated = sorted(key for key, count in counts.items() if count > 1)
    if repeated:
        raise ConfigError(
            "sweeps",
            f"(num_labeled, seed, method, label_selection) {repeated[0]} is in two sweeps",
        )
    workdir_lib.create(workdir)
    rows.sort(key=lambda r: (r["num_labeled"], r["seed"], r["method"]))
    curves = [c for d in sweep_dirs for c in read_curves_csv(os.path.join(d, "curves.csv"))]
    print(write_outputs(workdir, rows, curves, title), flush=True)


def _write_csv(path: str, columns, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    metrics.atomic_write_text(path, buffer.getvalue())


def write_outputs(workdir: str, rows: list[dict], curves: list[dict], title: str) -> str:
    """results.csv, summary.md, accuracy_vs_labels.png; with eval curves also curves.csv and
    accuracy_vs_steps.png. Returns summary.md's text."""
    _write_csv(os.path.join(workdir, "results.csv"), CSV_COLUMNS, rows)
    summary = summarise(rows)
    text = sweep_markdown(summary, rows, title)
    metrics.atomic_write_text(os.path.join(workdir, "summary.md"), text)
    plots.plot_accuracy_vs_labels(summary, os.path.join(workdir, "accuracy_vs_labels.png"), title)
    if curves:
        _write_csv(os.path.join(workdir, "curves.csv"), CURVE_COLUMNS, curves)
        plots.plot_accuracy_vs_steps(curves, os.path.join(workdir, "accuracy_vs_steps.png"), title)
    return text
