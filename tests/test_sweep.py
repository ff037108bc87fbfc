"""Label-budget sweeps: the three outputs, written as runs end, skipping finished runs, --status,
vmapped seeds, jobs and shards."""

import csv
import json
import os
import subprocess
import time

import numpy as np
import pytest

from sgan_jax.runs import provenance
from sgan_jax.sweeps import summary as summary_lib
from sgan_jax.sweeps import sweep_results
from sgan_jax.training import train

from .conftest import (
    NAMESPACE,
    TEST_EXAMPLES,
    cli_env,
    load_config,
    read_rows,
    run_script,
    script_command,
    skip_without_tmpfs_namespace,
    tiny,
)

# The sweeps here test the sweep's machinery, not learning: their runs train on batches of 8, not
# the tutorial's 32 (a tiny CLI run took ~29 s instead of ~34 s here, warm cache, 2 runs each).
# Tiny runs that must learn something (conftest.TINY) keep 32: 20 steps of 8 stayed at chance.
BATCH_SIZE = 8

SWEEP_ARGS = (
    f"--config.test_examples={TEST_EXAMPLES}",
    f"--config.batch_size={BATCH_SIZE}",
    "--num_labeled=20,100",
    "--seeds=0,1",
    "--config.num_iterations=10",
    "--config.supervised_epochs=2",
    "--config.log_every=5",
    "--config.eval_every=10",
    "--config.sample_every=10",
    "--config.checkpoint_every=10",
    "--config.num_validation=100",
)
# results.csv as the sweep_dir fixture first saw it, while the sweep was still running.
FIRST_SEEN = {}


@pytest.fixture(scope="module")
def sweep_dir(mnist, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    logs = tmp_path_factory.mktemp("sweep_logs")
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        process = subprocess.Popen(
            script_command("sweep.py", f"--workdir={workdir}", *SWEEP_ARGS, "--vectorize_seeds"),
            env=cli_env(),
            stdout=stdout,
            stderr=stderr,
        )
        results_csv = workdir / "results.csv"
        while process.poll() is None and "rows" not in FIRST_SEEN:
            if results_csv.exists():  # written by rename: whole or absent
                FIRST_SEEN["rows"] = list(csv.DictReader(results_csv.open()))
            time.sleep(0.05)
        process.wait(timeout=900)
    assert process.returncode == 0, (logs / "stderr").read_text()[-4000:]
    output = (logs / "stdout").read_text()
    assert "run 1/4" in output and "run 3/4" in output
    return workdir


def test_sweep_writes_the_three_files(sweep_dir):
    with open(sweep_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    # The original five columns first, as scripts read them; the newer ones after.
    assert list(rows[0])[:5] == ["num_labeled", "seed", "method", "test_accuracy", "wall_seconds"]
    assert list(rows[0])[5:] == [
        "label_selection",
        "final_step",
        "selected_test_accuracy",
        "selected_step",
        "git_commit",
        "machine",
        "cpu_cores_usable",
        "num_iterations",
        "data_seed",
        "num_validation",
        "config_hash",
        "selected_epoch",
    ]
    assert len(rows) == 8
    assert {(r["num_labeled"], r["seed"], r["method"]) for r in rows} == {
        (n, s, m) for n in ("20", "100") for s in ("0", "1") for m in ("sgan", "supervised")
    }
    for row in rows:
        assert 0 <= float(row["test_accuracy"]) <= 1 and float(row["wall_seconds"]) > 0
    summary = (sweep_dir / "summary.md").read_text()
    for budget in ("| 20 |", "| 100 |"):
        assert budget in summary
    # sgan and the baseline, each final and validation-selected
    assert summary.count("(n=2)") == 8
    sgan_20 = [
        float(r["test_accuracy"])
        for r in rows
        if r["num_labeled"] == "20" and r["method"] == "sgan"
    ]
    assert f"{100 * np.mean(sgan_20):.2f} ± {100 * np.std(sgan_20, ddof=1):.2f}%" in summary
    assert (sweep_dir / "accuracy_vs_labels.png").stat().st_size > 10_000
    for name in ("labels20_seed0", "labels100_seed1"):
        assert (sweep_dir / name / "results.json").exists()
        assert (sweep_dir / name / "metrics.jsonl").exists()
    # A line per run: iterations, final and validation-selected accuracy, baseline.
    for n in (20, 100):
        for seed in (0, 1):
            results = json.load(open(sweep_dir / f"labels{n}_seed{seed}" / "results.json"))
            line = (
                f"| {n} | {seed} | first | {seed} | sgan | 10 "
                f"| {percent(results['test_accuracy'])} "
                f"| {percent(results['selected_test_accuracy'])} "
                f"({results['best_validation_step']}) "
                f"| {percent(results['supervised_test_accuracy'])} "
                f"| {percent(results['selected_supervised_test_accuracy'])} "
                f"(epoch {results['supervised_selected_epoch']}) |"
            )
            assert line in summary.splitlines(), (line, summary)


def test_one_run_shows_no_spread(sweep_dir):
    """A budget with one finished seed: its mean alone, not a "± 0.00%" that reads as measured."""
    rows = [r for r in sweep_results.read_results_csv(sweep_dir / "results.csv") if r["seed"] == 0]
    markdown = summary_lib.summary_markdown(summary_lib.summarise(rows), "one seed")
    by_budget = {line.split(" | ")[0]: line for line in table_lines(markdown)}
    assert "±" not in by_budget["| 20"] + by_budget["| 100"]
    for row in rows:
        if row["method"] == "sgan":
            budget = by_budget[f"| {row['num_labeled']}"]
            assert f"| {percent(row['test_accuracy'])} (n=1) |" in budget, markdown


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_the_files_are_written_as_each_run_ends(sweep_dir):
    """A sweep stopped part-way (preempted, a run failing, hours in) has the tables of what
    finished: results.csv first appears after the first vmapped group, the 20-label runs."""
    first = FIRST_SEEN["rows"]
    assert {(r["num_labeled"], r["seed"], r["method"]) for r in first} == {
        ("20", s, m) for s in ("0", "1") for m in ("sgan", "supervised")
    }


def test_status_prints_every_run_and_changes_nothing(sweep_dir, tmp_path):
    def snapshot():
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sweep_dir.rglob("*")}

    before = snapshot()
    same = run_script("sweep.py", f"--workdir={sweep_dir}", *SWEEP_ARGS, "--status")
    assert table_lines(same.stdout) == table_lines((sweep_dir / "summary.md").read_text())
    # Longer runs and a third seed: every run is unfinished, at step 10 of 20, or not started.
    longer = run_script(
        "sweep.py",
        f"--workdir={sweep_dir}",
        *SWEEP_ARGS,
        "--config.num_iterations=20",
        "--seeds=0,1,2",
        "--status",
    ).stdout
    assert "No run has finished yet." in longer
    for n in (20, 100):
        for seed in (0, 1):
            folder = sweep_dir / f"labels{n}_seed{seed}"
            evals = [r for r in read_rows(folder) if "validation_accuracy" in r]
            best = max(evals, key=lambda r: r["validation_accuracy"])
            line = (
                f"| {n} | {seed} | first | {seed} | sgan | 10 of 20, unfinished "
                f"| {percent(evals[-1]['test_accuracy'])} at 10 "
                f"| {percent(best['test_accuracy'])} ({best['step']}) | – | – |"
            )
            assert line in longer.splitlines(), (line, longer)
        not_started = f"| {n} | 2 | first | 2 | sgan | not started | – | – | – | – |"
        assert not_started in longer.splitlines()
    assert snapshot() == before
    missing = run_script(
        "sweep.py", f"--workdir={tmp_path / 'none'}", *SWEEP_ARGS, "--status", check=False
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: workdir: ")
    assert not (tmp_path / "none").exists()


def test_rerun_skips_finished_runs(sweep_dir):
    before = (sweep_dir / "labels20_seed0" / "metrics.jsonl").read_bytes()
    result = run_script("sweep.py", f"--workdir={sweep_dir}", *SWEEP_ARGS, "--vectorize_seeds")
    assert result.stdout.count(": finished") == 4
    assert "run 1/" not in result.stdout
    assert (sweep_dir / "labels20_seed0" / "metrics.jsonl").read_bytes() == before


def test_iterations_left_count_from_the_last_logged_step(sweep_dir, tmp_path):
    """What the sweep's ETA between runs is now made of (it divided the time so far by runs, so
    a run resumed half-way counted as a whole one); the line itself is asserted below."""
    from sgan_jax.sweeps import sweep

    config = load_config("sgan_mnist")
    finished = str(sweep_dir / "labels20_seed0")  # logged up to its last step, 10
    for num_iterations in (10, 25):
        config.num_iterations = num_iterations
        assert sweep.iterations_left(config, finished) == num_iterations - 10
    assert sweep.iterations_left(config, str(tmp_path / "not_started")) == 25


def test_eta_between_runs_weighs_runs_by_their_iterations_left(
    sweep_dir, tmp_path, monkeypatch, capsys
):
    """The printed ETA: time so far per iteration trained, times the iterations left. Runs of
    30 iterations, the second resumed at step 10; training is replaced by a clock that moves 1 s
    per iteration, so only the sweep's arithmetic is under test. Dividing by runs instead printed
    1m00s, not 0m50s, before the second run."""
    import shutil
    import types

    from sgan_jax.sweeps import sweep

    clock = [0.0]
    monkeypatch.setattr(sweep, "time", types.SimpleNamespace(time=lambda: clock[0]))

    def train_for_a_second_per_iteration(configs, folders):
        clock[0] += sweep.iterations_left(configs[0], folders[0])

    monkeypatch.setattr(sweep.train, "train_and_evaluate_seeds", train_for_a_second_per_iteration)
    config = load_config("sgan_mnist")
    config.num_iterations = 30
    folders = [str(tmp_path / name) for name in ("fresh", "resumed", "fresh_too")]
    os.makedirs(folders[1])
    shutil.copy(sweep_dir / "labels20_seed0" / "metrics.jsonl", folders[1])  # logged up to 10
    sweep._run_in_process([(config, f) for f in folders], False, lambda: None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run ")]
    assert lines == [
        "run 1/3: fresh",
        "run 2/3, ETA 0m50s: resumed",  # 30 s for 30 iterations; 20 + 30 left
        "run 3/3, ETA 0m30s: fresh_too",  # 50 s for 50; 30 left
    ]


def test_data_seed_follows_the_seed(sweep_dir):
    import json

    for seed in (0, 1):
        config = json.load(open(sweep_dir / f"labels20_seed{seed}" / "config.json"))
        assert config["seed"] == seed and config["data_seed"] == seed


def test_vmapped_seeds_equal_separate_runs(mnist, tmp_path):
    def config(seed):
        return tiny(
            load_config("sgan_mnist"),
            seed=seed,
            data_seed=seed,
            label_selection="balanced",
            supervised_epochs=0,
            num_iterations=10,
            batch_size=BATCH_SIZE,
        )

    together = train.train_and_evaluate_seeds(
        [config(0), config(1)], [str(tmp_path / "v0"), str(tmp_path / "v1")]
    )
    for seed in (0, 1):
        alone = train.train_and_evaluate(config(seed), str(tmp_path / f"s{seed}"))
        rows_v, rows_s = read_rows(tmp_path / f"v{seed}"), read_rows(tmp_path / f"s{seed}")
        assert [r["step"] for r in rows_v] == [r["step"] for r in rows_s]
        for a, b in zip(rows_v, rows_s, strict=True):
            # float32 sums in another order drift by ~1e-4 over 10 GAN steps; an accuracy may
            # flip one of its examples (5 log steps' labeled batches).
            for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss"):
                np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-4, err_msg=key)
            assert abs(a["train_accuracy"] - b["train_accuracy"]) <= 2 / (5 * BATCH_SIZE)
        np.testing.assert_allclose(
            together[seed]["test_accuracy"], alone["test_accuracy"], atol=5e-3
        )
    assert read_rows(tmp_path / "v0")[0] != read_rows(tmp_path / "v1")[0]
    assert os.path.exists(tmp_path / "v1" / "samples" / "step_0000010.png")


def test_merge_sweeps_rebuilds_the_table_and_refuses_repeats(sweep_dir, tmp_path):
    with open(sweep_dir / "results.csv") as f:
        header, *lines = f.read().splitlines()
    for budget in ("20", "100"):  # split the sweep in two, by budget
        part = tmp_path / f"part{budget}"
        part.mkdir()
        rows = [line for line in lines if line.split(",")[0] == budget]
        (part / "results.csv").write_text("\n".join([header, *rows]) + "\n")
    merged = tmp_path / "merged"
    run_script(
        "merge_sweeps.py",
        f"--sweeps={tmp_path / 'part100'},{tmp_path / 'part20'}",
        f"--workdir={merged}",
    )
    with open(merged / "results.csv") as f:
        merged_rows = list(csv.DictReader(f))
    with open(sweep_dir / "results.csv") as f:
        original_rows = list(csv.DictReader(f))
    key = lambda r: (int(r["num_labeled"]), int(r["seed"]), r["method"])  # noqa: E731
    assert [key(r) for r in merged_rows] == sorted(key(r) for r in original_rows)
    by_key = {key(r): r for r in original_rows}
    for row in merged_rows:
        assert float(row["test_accuracy"]) == float(by_key[key(row)]["test_accuracy"])

    summary = (merged / "summary.md").read_text()
    assert table_lines(summary) == table_lines((sweep_dir / "summary.md").read_text())
    assert (merged / "accuracy_vs_labels.png").stat().st_size > 10_000

    again = run_script(
        "merge_sweeps.py",
        f"--sweeps={sweep_dir},{tmp_path / 'part20'}",
        f"--workdir={tmp_path / 'repeat'}",
        check=False,
    )
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("error: sweeps:")
    assert not (tmp_path / "repeat").exists()


JOB_ARGS = (
    f"--config.test_examples={TEST_EXAMPLES}",
    f"--config.batch_size={BATCH_SIZE}",
    "--num_labeled=20",
    "--seeds=0,1",
    "--config.num_iterations=10",
    "--config.supervised_epochs=1",
    "--config.log_every=5",
    "--config.eval_every=10",
    "--config.sample_every=10",
    "--config.checkpoint_every=10",
)


def _rows(sweep):
    with open(sweep / "results.csv") as f:
        return sorted(csv.DictReader(f), key=lambda r: (r["seed"], r["method"]))


def test_jobs_overlap_runs_and_shards_merge_into_the_whole_sweep(mnist, tmp_path):
    """--jobs=2 on 2 cores runs the two runs at once, one core each; the same runs as two
    shards (one core each too, so the same float rounding) merge into the same table."""
    whole = tmp_path / "whole"
    result = run_script("sweep.py", f"--workdir={whole}", *JOB_ARGS, "--jobs=2")
    assert result.stdout.count("start labels20_seed") == 2
    spans = []
    for seed in (0, 1):
        results = json.load(open(whole / f"labels20_seed{seed}" / "results.json"))
        assert results["mesh_devices"] == 1
        # Each run had its slot's cores, and says so: they set its float rounding.
        assert results["host"]["cpu_cores_usable"] == len(os.sched_getaffinity(0)) // 2
        spans.append((results["process_started"], results["finished"]))
        assert (whole / f"labels20_seed{seed}" / "train.log").stat().st_size > 0
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a  # the two runs overlapped in time
    again = run_script("sweep.py", f"--workdir={whole}", *JOB_ARGS, "--jobs=2")
    assert again.stdout.count(": finished") == 2 and "start " not in again.stdout
    # The shards side by side, as two machines would run them, each on a core of its own.
    cores = sorted(os.sched_getaffinity(0))
    pins = [cores[i % len(cores)] for i in (0, 1)]
    parts = [tmp_path / f"part{i}" for i in (0, 1)]
    shards = [
        subprocess.Popen(
            script_command(
                "sweep.py", f"--workdir={part}", *JOB_ARGS, "--num_shards=2", f"--shard_index={i}"
            ),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda core=pins[i]: os.sched_setaffinity(0, {core}),
        )
        for i, part in enumerate(parts)
    ]
    for shard, part in zip(shards, parts, strict=True):
        _, stderr = shard.communicate(timeout=900)
        assert shard.returncode == 0, stderr[-3000:]
        assert len(_rows(part)) == 2  # one run: SGAN and its baseline
    merged = tmp_path / "merged"
    run_script("merge_sweeps.py", f"--sweeps={parts[0]},{parts[1]}", f"--workdir={merged}")
    keys = ("num_labeled", "seed", "method", "test_accuracy", "selected_test_accuracy")
    keys += ("git_commit", "machine", "cpu_cores_usable")
    assert [{k: r[k] for k in keys} for r in _rows(merged)] == [
        {k: r[k] for k in keys} for r in _rows(whole)
    ]
    # What ran where, in the table and in summary.md: a core each, this checkout's code.
    commit, machine = _rows(whole)[0]["git_commit"], _rows(whole)[0]["machine"]
    assert commit == provenance.git_commit() and machine
    assert {r["cpu_cores_usable"] for r in _rows(whole)} == {str(len(cores) // 2)}
    ran_on = f"- commit {commit}, {machine}, usable CPU cores {len(cores) // 2}: 2 runs"
    assert ran_on in (merged / "summary.md").read_text().splitlines()
    # label_selection=first, no validation split: data_seed (= seed) chose nothing, and no
    # table claims a spread over label draws.
    assert {r["data_seed"] for r in _rows(whole)} == {"n/a"}
    summary = (whole / "summary.md").read_text()
    assert "the same in every run of a budget" in summary and "| 20 | 1 | first | n/a |" in summary
    assert "drawn by data_seed" not in summary


def test_each_vmapped_seed_records_its_own_wall_time(sweep_dir):
    """The seeds of a budget trained together; each then trains its baseline in turn. Seed 1's
    wall time stops at the end of training plus its own baseline: so between the end of training
    and its `finished` stamp lies seed 0's baseline, which its wall time leaves out (the run
    started fresh, so wall time counts from process_started)."""
    for n in (20, 100):
        first, second = (
            json.load(open(sweep_dir / f"labels{n}_seed{seed}" / "results.json")) for seed in (0, 1)
        )
        baseline_0 = json.load(open(sweep_dir / f"labels{n}_seed0" / "supervised.json"))
        assert second["vectorized_seeds"] == 2
        left_out = second["finished"] - second["process_started"] - second["wall_seconds"]
        assert left_out >= baseline_0["wall_seconds"], (left_out, baseline_0["wall_seconds"])


def test_the_baseline_is_selected_by_validation_as_the_gan_is(sweep_dir):
    """Both get a validation-selected figure from the same 100 held-out images; the baseline's
    from its evaluated epochs, the best validation accuracy deciding."""
    rows = [r for r in _rows(sweep_dir) if r["method"] == "supervised"]
    assert len(rows) == 4
    for row in rows:
        folder = sweep_dir / f"labels{row['num_labeled']}_seed{row['seed']}"
        results = json.load(open(folder / "results.json"))
        baseline = json.load(open(folder / "supervised.json"))
        best = max(baseline["evals"], key=lambda e: e["validation_accuracy"])
        assert [e["epoch"] for e in baseline["evals"]] == [1, 2]
        assert results["selected_supervised_test_accuracy"] == best["test_accuracy"]
        assert float(row["selected_test_accuracy"]) == best["test_accuracy"]
        assert int(row["selected_epoch"]) == results["supervised_selected_epoch"] == best["epoch"]
    summary = (sweep_dir / "summary.md").read_text()
    assert "by 100 labeled validation images held out of training" in summary


def test_merging_a_tutorial_and_an_improved_sweep_is_refused(sweep_dir, tmp_path):
    """Each row names its method and config: an improved sweep's rows cannot be averaged with
    the tutorial's (their baselines, both "supervised", ran different configs)."""
    improved = tmp_path / "improved"
    run_script(
        "sweep.py",
        f"--workdir={improved}",
        "--config=experiments/configs/improved_mnist.py",
        f"--config.test_examples={TEST_EXAMPLES}",
        "--num_labeled=100",
        "--seeds=0",
        "--config.num_iterations=5",
        "--config.supervised_epochs=1",
        "--config.num_validation=100",
    )
    rows = _rows(improved)
    assert {r["method"] for r in rows} == {"improved_gan", "supervised"}
    assert len({r["config_hash"] for r in rows}) == 1 and rows[0]["num_iterations"] == "5"
    assert rows[0]["data_seed"] == "0" and rows[0]["num_validation"] == "100"
    merged = tmp_path / "merged"
    refused = run_script(
        "merge_sweeps.py", f"--sweeps={sweep_dir},{improved}", f"--workdir={merged}", check=False
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sweeps: supervised rows come from two configs: ")
    assert rows[0]["config_hash"] in last and not merged.exists()


def test_an_older_results_csv_is_migrated_by_naming_its_method(sweep_dir, tmp_path):
    """A results.csv from before rows named their method says "sgan" for every GAN: merging it
    needs --legacy_method, and its rows then say that their config was not kept."""
    old = tmp_path / "old"
    old.mkdir()
    with open(sweep_dir / "results.csv") as f:
        rows = [{k: r[k] for k in list(r)[:12]} for r in csv.DictReader(f)]
    with open(old / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    refused = run_script("merge_sweeps.py", f"--sweeps={old}", f"--workdir={old}", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: legacy_method: ")
    run_script("merge_sweeps.py", f"--sweeps={old}", f"--workdir={old}", "--legacy_method=sgan")
    migrated = _rows(old)
    assert {r["config_hash"] for r in migrated} == {"not kept"}
    assert [r["test_accuracy"] for r in migrated] == [r["test_accuracy"] for r in _rows(sweep_dir)]


def test_tensorboard_on_the_sweep_folder_shows_every_run(sweep_dir):
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(sweep_dir))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert set(runs) == {f"labels{n}_seed{s}" for n in (20, 100) for s in (0, 1)}
    for run in runs:
        # The plugin reader holds scalars as tensors (the values: test_runtime_settings.py).
        tags = multiplexer.GetAccumulator(run).Tags()["tensors"]
        assert {"g_loss", "learning_rate", "test_accuracy"} <= set(tags), (run, tags)


def test_a_sweep_file_that_finds_the_disk_full_ends_in_one_line(sweep_dir, tmp_path):
    """Outside training too (here merge_sweeps.py, its plot on a 16 KiB tmpfs that the tables
    fill): exit 5 and one line, not a traceback (exit 1 before)."""
    skip_without_tmpfs_namespace(tmp_path)
    merged = tmp_path / "merged"
    merged.mkdir()
    command = script_command("merge_sweeps.py", f"--sweeps={sweep_dir}", f"--workdir={merged}")
    script = 'mount -t tmpfs -o size=16k tmpfs "$OUT" || exit 99; exec "$@"'
    result = subprocess.run(
        [*NAMESPACE, "sh", "-c", script, "sh", *command],
        env=cli_env(OUT=str(merged)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 5 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no space left on device; free some, then run the same command"
    )
