"""summary.md: mean ± std per method and label budget, a line per run, what the validation split
costs, which labels and configs the runs used, and where they ran.

Rows are results.csv rows (`sweep_results`): one per method per run, the GAN's under its
method's name and the baseline's as "supervised".
"""

import collections

import numpy as np

BASELINE = "supervised"


def summarise(rows: list[dict]) -> dict:
    """summary[column][num_labeled] = (mean, std, n) of test accuracy; std with ddof=1. A column
    is a method, or its validation-selected figure; rows of several label selections (merged
    sweeps) are kept apart: "sgan, first labels"."""
    groups: dict = {}
    selections = {row.get("label_selection") for row in rows}

    def add(column, row, value):
        if len(selections) > 1:
            column = f"{column}, {row.get('label_selection')} labels"
        groups.setdefault(column, {}).setdefault(row["num_labeled"], []).append(value)

    for row in rows:
        add(row["method"], row, row["test_accuracy"])
        if row.get("selected_test_accuracy") is not None:
            add(f"{row['method']}, validation-selected", row, row["selected_test_accuracy"])
    return {
        column: {
            budget: (
                float(np.mean(values)),
                float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                len(values),
            )
            for budget, values in by_budget.items()
        }
        for column, by_budget in groups.items()
    }


def _column_order(column: str):
    # The GAN's columns first, the baseline's after them.
    return (column.startswith(BASELINE), column)


def summary_markdown(summary: dict, title: str) -> str:
    budgets = sorted({b for by_budget in summary.values() for b in by_budget})
    columns = sorted(summary, key=_column_order)
    lines = [
        f"# {title}",
        "",
        "Test accuracy, mean ± std over seeds (n runs).",
        "",
        "| labels | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for budget in budgets:
        cells = []
        for column in columns:
            if budget in summary[column]:
                mean, std, n = summary[column][budget]
                # One run has no spread: "± 0.00%" would read as a measured one.
                spread = f" ± {100 * std:.2f}" if n > 1 else ""
                cells.append(f"{100 * mean:.2f}{spread}% (n={n})")
            else:
                cells.append("–")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _iterations(row: dict) -> str:
    if row.get("final_step") is not None:
        return f"{row['final_step']:,}"
    if "latest_step" not in row:  # a finished run from a results.csv without the column
        return "not recorded"
    if row["latest_step"] is None:
        return "not started"
    return f"{row['latest_step']:,} of {row['num_iterations']:,}, unfinished"


def _with_step(value, step, unit: str = "") -> str:
    return _percent(value) + (f" ({unit}{step:,})" if step is not None else "")


def runs_markdown(rows: list[dict]) -> str:
    """A line per GAN run: its method, iterations, test accuracy (the latest eval's, with its
    step, for an unfinished run), the validation-selected accuracy and its step, and the
    baseline's final and validation-selected accuracies."""

    def key(row):
        return (row["num_labeled"], row["seed"], row.get("label_selection") or "")

    baselines = {key(r): r for r in rows if r["method"] == BASELINE}
    lines = [
        "| labels | seed | label selection | data seed | method | iterations | test accuracy "
        "| validation-selected (step) | supervised | supervised, validation-selected (epoch) |",
        "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in sorted((r for r in rows if r["method"] != BASELINE), key=key):
        test = _percent(row["test_accuracy"])
        if row.get("test_step") is not None:
            test += f" at {row['test_step']:,}"
        baseline = baselines.get(key(row), {})
        cells = [row["num_labeled"], row["seed"], row.get("label_selection") or "–"]
        cells += [_data_seed(row), row["method"], _iterations(row), test]
        cells.append(_with_step(row.get("selected_test_accuracy"), row.get("selected_step")))
        cells.append(_percent(baseline.get("test_accuracy")))
        cells.append(
            _with_step(
                baseline.get("selected_test_accuracy"), baseline.get("selected_epoch"), "epoch "
            )
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _data_seed(row: dict) -> str:
    value = row.get("data_seed")
    return "–" if value is None else str(value)


def labels_markdown(rows: list[dict]) -> str:
    """Which images were labeled and held out, so that no spread is read as covering a choice
    of labels that every run shared."""
    lines = ["", "Labels:", ""]
    for selection in sorted({r.get("label_selection") or "unknown" for r in rows}):
        of = [r for r in rows if (r.get("label_selection") or "unknown") == selection]
        if selection == "first":
            lines.append(
                "- first: the first N training images, the same in every run of a budget: the "
                "spread over seeds is that of initialisation, noise and batches, not of the "
                "choice of labels."
            )
        elif selection == "balanced":
            seeds = sorted({str(r["data_seed"]) for r in of if r.get("data_seed") is not None})
            drawn = f" (data seeds {', '.join(seeds)})" if seeds else ""
            lines.append(
                f"- balanced: N / classes images of each class, drawn by data_seed{drawn}: "
                "the spread covers the choice of labels too."
            )
        else:
            lines.append(f"- {selection}: recorded before the label selection was.")
    validation = sorted({r["num_validation"] for r in rows if r.get("num_validation")})
    if validation:
        lines += [
            "",
            f"Validation-selected figures choose a checkpoint (the GAN's eval steps, the "
            f"baseline's epochs) by {' or '.join(f'{n:,}' for n in validation)} labeled "
            "validation images held out of training, besides the N training labels; the "
            "other figures, final weights, use no validation labels.",
        ]
    return "\n".join(lines) + "\n"


def configs_markdown(rows: list[dict]) -> str:
    """The config of each method's rows (a hash of its keys but the per-run ones), and its
    iterations."""
    lines = ["", "Configs:", ""]
    seen = collections.defaultdict(set)
    for r in rows:
        seen[r["method"]].add((r.get("config_hash") or "not kept", r.get("num_iterations")))
    for method in sorted(seen, key=_column_order):
        for config_hash, iterations in sorted(seen[method], key=str):
            length = f", {iterations:,} iterations" if iterations else ""
            lines.append(f"- {method}: config {config_hash}{length}")
    return "\n".join(lines) + "\n"


def provenance_markdown(rows: list[dict]) -> str:
    """The finished runs by commit, machine and usable CPU cores, with their numbers."""
    counts = collections.Counter(
        (r.get("git_commit") or "unknown", r.get("machine") or "unknown", r.get("cpu_cores_usable"))
        for r in rows
        if r["method"] != BASELINE
    )
    lines = ["", "Ran on:", ""]
    for (commit, machine, cores), count in sorted(counts.items(), key=str):
        runs = f"{count} run" + ("s" if count > 1 else "")
        lines.append(f"- commit {commit}, {machine}, usable CPU cores {cores or '?'}: {runs}")
    return "\n".join(lines) + "\n"


def sweep_markdown(summary: dict, rows: list[dict], title: str, unfinished=()) -> str:
    """summary.md: mean ± std (`summary`, of the finished runs' `rows`), then a line per run,
    finished or not (`unfinished`: progress rows, for `sweep.py --status`), the labels, the
    configs and where the runs ran."""
    if rows:
        head = summary_markdown(summary, title)
    else:
        head = f"# {title}\n\nNo run has finished yet.\n"
    tail = labels_markdown([*rows, *unfinished])
    if rows:
        tail += configs_markdown(rows) + provenance_markdown(rows)
    return head + "\nPer run:\n\n" + runs_markdown([*rows, *unfinished]) + tail
