"""A sweep's rows: results.csv and curves.csv from the runs' files, what each row ran (method,
config hash, label draw), the files and plots written from them, and merging several sweeps.
summary.md's text is `summary`'s.
"""

import collections
import csv
import hashlib
import io
import json
import os

from sgan_jax import methods
from sgan_jax.runs import metrics, plots
from sgan_jax.runs import workdir as workdir_lib
from sgan_jax.runs.errors import ConfigError
from sgan_jax.sweeps import summary as summary_lib
from sgan_jax.sweeps.summary import BASELINE
from sgan_jax.training import config as config_lib
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
    "num_iterations",  # what ran: the method column names the GAN's method (or "supervised")
    "data_seed",  # "n/a" where it chose nothing (label_selection=first, no validation split)
    "num_validation",
    "config_hash",  # the config but its per-run and runtime keys; "not kept" for older rows
    "selected_epoch",  # the baseline's, at its best validation accuracy
)
# Keys that differ between the runs of one sweep, besides the runtime keys: a config hash
# leaves them out, so that one sweep (or merged sweeps of one experiment) has one hash.
PER_RUN_KEYS = ("num_labeled", "seed", "data_seed", "label_selection")
NOT_KEPT = "not kept"
CURVE_KEYS = ("step", "test_accuracy", "validation_accuracy")
CURVE_COLUMNS = ("num_labeled", "seed", "label_selection", *CURVE_KEYS)


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


def config_hash(config: dict) -> str:
    """8 hex digits of the config's keys that matter to its method, runtime and per-run keys
    left out, as the sweep writes them to results.csv."""
    kept = {
        k: v
        for k, v in config_lib.comparable(config).items()
        if k not in workdir_lib.RUNTIME_KEYS and k not in PER_RUN_KEYS
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]


def _run_rows(folder: str, num_labeled: int, seed: int) -> list[dict]:
    results = metrics.read_json(os.path.join(folder, "results.json"))
    config = workdir_lib.saved_config(folder) or {}
    baseline_path = os.path.join(folder, "supervised.json")
    baseline = metrics.read_json(baseline_path) if os.path.exists(baseline_path) else {}
    host = results.get("host") or {}  # absent in runs from before it was recorded
    # Older results.json lack data_seed_applies; their validation accuracy tells the split.
    applies = results.get(
        "data_seed_applies",
        results.get("label_selection") != "first" or "validation_accuracy" in results,
    )
    common = dict(
        num_labeled=num_labeled,
        seed=seed,
        label_selection=results.get("label_selection"),
        git_commit=results.get("git_commit"),
        # The accelerator's kind; on CPU ("cpu") the processor's name.
        machine=host.get("cpu_model") if results.get("device") == "cpu" else results.get("device"),
        cpu_cores_usable=host.get("cpu_cores_usable"),
        num_iterations=results.get("num_iterations"),
        data_seed=results.get("data_seed") if applies else "n/a",
        num_validation=config.get("num_validation"),
        config_hash=config_hash(config) if config else NOT_KEPT,
    )
    rows = [
        dict(
            common,
            method=config_lib.comparable(config)["method"],
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
                method=BASELINE,
                test_accuracy=results["supervised_test_accuracy"],
                wall_seconds=baseline.get("wall_seconds", float("nan")),
                selected_test_accuracy=baseline.get("selected_test_accuracy"),
                selected_epoch=baseline.get("selected_epoch"),
            )
        )
    return rows


def progress_row(folder: str, config) -> dict:
    """An unfinished run's line for the per-run table, from its metrics.jsonl: the latest step,
    the latest test accuracy, and the best validation so far, chosen as the finished run will."""
    rows = metrics.read_rows(os.path.join(folder, "metrics.jsonl"))
    evals = [row for row in rows if "test_accuracy" in row]
    best = progress.EvalTracker(rows, patience=0).best or {}
    return dict(
        num_labeled=config.num_labeled,
        seed=config.seed,
        method=config.method,
        label_selection=config.label_selection,
        data_seed=config.data_seed if workdir_lib.data_seed_applies(config) else "n/a",
        num_validation=config.num_validation,
        num_iterations=config.num_iterations,
        latest_step=rows[-1]["step"] if rows else None,
        test_accuracy=evals[-1]["test_accuracy"] if evals else None,
        test_step=evals[-1]["step"] if evals else None,
        selected_test_accuracy=best.get("test_accuracy"),
        selected_step=best.get("step"),
    )


def _parse(value: str, kind):
    return kind(value) if value not in ("", None) else None


def _int_or_text(value: str):
    return int(value) if value.lstrip("-").isdigit() else value


_KINDS = dict(num_labeled=int, seed=int, test_accuracy=float, wall_seconds=float, final_step=int)
_KINDS.update(selected_test_accuracy=float, selected_step=int, cpu_cores_usable=int)
_KINDS.update(num_iterations=int, num_validation=int, selected_epoch=int, data_seed=_int_or_text)


def read_results_csv(path: str, legacy_method: str | None = None) -> list[dict]:
    """results.csv rows; columns an older sweep did not write read as None. Files written before
    rows named their method call every GAN row "sgan", whatever ran: `legacy_method` says
    which method it was, and their config hash reads "not kept"."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        legacy = "config_hash" not in (reader.fieldnames or ())
        rows = [
            {key: _parse(row.get(key), _KINDS.get(key, str)) for key in CSV_COLUMNS}
            for row in reader
        ]
    if not legacy:
        return rows
    if legacy_method is None:
        raise ConfigError(
            "legacy_method",
            f"{path} is from before rows named their method; give the method its GAN rows ran",
        )
    for row in rows:
        if row["method"] != BASELINE:
            row["method"] = legacy_method
        row["config_hash"] = NOT_KEPT
    return rows


def read_curves_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    kinds = dict(num_labeled=int, seed=int, step=int, label_selection=str)
    with open(path, newline="") as f:
        return [
            {key: _parse(row.get(key), kinds.get(key, float)) for key in CURVE_COLUMNS}
            for row in csv.DictReader(f)
        ]


def _check_one_config_per_method(rows: list[dict], sources: list[str]) -> None:
    """Refuses rows of one method from different configs: their mean would mix experiments."""
    first = {}
    for row, source in zip(rows, sources, strict=True):
        config = row.get("config_hash") or NOT_KEPT
        seen = first.setdefault(row["method"], (config, source))
        if seen[0] != config:
            raise ConfigError(
                "sweeps",
                f"{row['method']} rows come from two configs: {seen[0]} ({seen[1]}) and "
                f"{config} ({source}); merge runs of one config",
            )


def merge_sweeps(sweep_dirs, workdir: str, title: str, legacy_method: str | None = None) -> None:
    """One results.csv, summary.md and plot from the results.csv of several sweeps of one
    experiment (e.g. seeds run on different machines, or both label selections): rows of one
    method must share a config, and a (num_labeled, seed, method, label_selection) appear once."""
    if legacy_method is not None and legacy_method not in methods.names():
        raise ConfigError(
            "legacy_method", f"must be one of {', '.join(methods.names())}; got {legacy_method!r}"
        )
    rows, sources = [], []
    for sweep_dir in sweep_dirs:
        path = os.path.join(sweep_dir, "results.csv")
        if not os.path.exists(path):
            raise ConfigError("sweeps", f"{path} does not exist")
        read = read_results_csv(path, legacy_method)
        rows += read
        sources += [sweep_dir] * len(read)
    _check_one_config_per_method(rows, sources)
    counts = collections.Counter(
        (r["num_labeled"], r["seed"], r["method"], r["label_selection"] or "") for r in rows
    )
    repeated = sorted(key for key, count in counts.items() if count > 1)
    if repeated:
        raise ConfigError(
            "sweeps",
            f"(num_labeled, seed, method, label_selection) {repeated[0]} is in two sweeps",
        )
    curves = [c for d in sweep_dirs for c in read_curves_csv(os.path.join(d, "curves.csv"))]
    workdir_lib.create(workdir)
    rows.sort(key=lambda r: (r["num_labeled"], r["seed"], r["method"]))
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
    summary = summary_lib.summarise(rows)
    text = summary_lib.sweep_markdown(summary, rows, title)
    metrics.atomic_write_text(os.path.join(workdir, "summary.md"), text)
    plots.plot_accuracy_vs_labels(summary, os.path.join(workdir, "accuracy_vs_labels.png"), title)
    if curves:
        _write_csv(os.path.join(workdir, "curves.csv"), CURVE_COLUMNS, curves)
        plots.plot_accuracy_vs_steps(curves, os.path.join(workdir, "accuracy_vs_steps.png"), title)
    return text
