"""Many devices: 4 simulated CPU devices (in a subprocess, as XLA reads the flag at start)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from .conftest import COMPILATION_CACHE, DATA_DIR, MANUAL_DIR, REPO

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from sgan_jax import train
    from tests.conftest import load_config, read_rows, tiny

    assert jax.device_count() == 4, jax.devices()
    out = sys.argv[1]

    def config(**overrides):
        return tiny(load_config("sgan_mnist"), supervised_epochs=0, **overrides)

    # Data parallel: one run's batch split over 4 devices, against the same run on 1.
    one = train.train_and_evaluate(config(num_devices=1), out + "/one")
    four = train.train_and_evaluate(config(num_devices=4), out + "/four")
    # Seeds placed across devices: 2 vmapped seeds on 2 devices, against 2 on 1 device.
    seeds = [config(seed=s, num_devices=2) for s in (0, 1)]
    spread = train.train_and_evaluate_seeds(seeds, [out + "/spread0", out + "/spread1"])
    seeds = [config(seed=s, num_devices=1) for s in (0, 1)]
    packed = train.train_and_evaluate_seeds(seeds, [out + "/packed0", out + "/packed1"])
    json.dump(dict(one=one, four=four, spread=spread, packed=packed,
                   rows={name: read_rows(out + "/" + name) for name in
                         ("one", "four", "spread0", "packed0", "spread1", "packed1")}),
              open(out + "/summary.json", "w"))
    """
)


def _close(rows_a, rows_b):
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for a, b in zip(rows_a, rows_b, strict=True):
        for key in ("d_loss_supervised", "d_loss_unsupervised", "g_loss"):
            assert abs(a[key] - b[key]) <= 1e-3 * abs(b[key]) + 1e-4, (key, a[key], b[key])


def _run_with_devices(script: str, count: int, out) -> dict:
    """Runs a script in a subprocess that sees `count` simulated CPU devices; its summary.json."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
        JAX_PLATFORMS="cpu",
        SGAN_MANUAL_DIR=os.path.abspath(MANUAL_DIR),
        TFDS_DATA_DIR=DATA_DIR,
        PYTHONPATH=REPO,
        JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE,
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.load(open(out / "summary.json"))


def test_four_devices_equal_one(mnist, tmp_path):
    summary = _run_with_devices(SCRIPT, 4, tmp_path)
    assert summary["one"]["mesh_devices"] == 1 and summary["four"]["mesh_devices"] == 4
    assert summary["spread"][0]["mesh_devices"] == 2
    rows = summary["rows"]
    _close(rows["four"], rows["one"])
    assert abs(summary["four"]["test_accuracy"] - summary["one"]["test_accuracy"]) <= 5e-3
    for seed in (0, 1):
        _close(rows[f"spread{seed}"], rows[f"packed{seed}"])
        assert (
            abs(summary["spread"][seed]["test_accuracy"] - summary["packed"][seed]["test_accuracy"])
            <= 5e-3
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two_processes(script: str, *args) -> list[subprocess.Popen]:
    """Starts experiments/<script> as 2 jax.distributed processes on localhost."""
    from .conftest import cli_env

    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(REPO, "experiments", script),
                *args,
                "--distributed",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]


def _run_two_processes(script: str, *args, returncode: int = 0) -> list[tuple[str, str]]:
    """Runs experiments/<script> as 2 jax.distributed processes; their (stdout, stderr)."""
    processes = _start_two_processes(script, *args)
    outputs = [p.communicate(timeout=900) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == returncode, err[-4000:]
    return outputs


def test_two_processes_equal_one_process_with_two_devices(mnist, tmp_path):
    """Multi-host, on one machine: 2 processes of 1 CPU device each (jax.distributed over
    localhost) train like 1 process with 2 devices; only process 0 writes files. A SIGTERM to
    process 1 alone stops both at the same step, with a checkpoint there, and the same commands
    resume them."""
    from .conftest import TINY, cli_env, read_results, read_rows, run_script

    args = (*TINY, "--config.supervised_epochs=1")
    run_script(
        "train.py",
        f"--workdir={tmp_path / 'one'}",
        *args,
        "--config.num_devices=2",
        env=cli_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    )
    two_args = (f"--workdir={tmp_path / 'two'}", *args)
    processes = _start_two_processes("train.py", *two_args)
    rows_file = tmp_path / "two" / "metrics.jsonl"
    while not (rows_file.exists() and rows_file.stat().st_size):
        assert processes[0].poll() is None, processes[0].communicate()[1][-4000:]
        time.sleep(0.02)
    processes[1].send_signal(signal.SIGTERM)
    stopped = [p.communicate(timeout=120)[1].strip().splitlines()[-1] for p in processes]
    assert [p.returncode for p in processes] == [75, 75], stopped
    assert stopped[0] == stopped[1] and stopped[0].startswith("stopped by SIGTERM; checkpoint")
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert step < 40 and (tmp_path / "two" / "checkpoints" / str(step)).is_dir()
    outputs = _run_two_processes("train.py", *two_args)
    assert "SGAN" in outputs[0][0] and "SGAN" not in outputs[1][0]  # one results table
    one, two = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert one["mesh_devices"] == two["mesh_devices"] == 2
    _close(read_rows(tmp_path / "two"), read_rows(tmp_path / "one"))
    assert abs(one["test_accuracy"] - two["test_accuracy"]) <= 5e-3
    assert abs(one["supervised_test_accuracy"] - two["supervised_test_accuracy"]) <= 5e-3
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["20", "30", "40"]


def test_two_process_sweep_writes_its_summary_once(mnist, tmp_path):
    """A --distributed sweep trains each run over both processes; only process 0 writes and
    prints the sweep's summary, and its rows are the runs' own results."""

    from sgan_jax import sweep_results

    from .conftest import TINY, read_results

    workdir = tmp_path / "sweep"
    args = (f"--workdir={workdir}", "--num_labeled=20", "--seeds=0", *TINY)
    outputs = _run_two_processes("sweep.py", *args)
    assert "recipe" in outputs[0][0] and "recipe" not in outputs[1][0]
    assert sorted(os.listdir(workdir)) == [
        "accuracy_vs_labels.png",
        "accuracy_vs_steps.png",
        "curves.csv",
        "labels20_seed0",
        "results.csv",
        "summary.md",
    ]
    run = read_results(workdir / "labels20_seed0")
    assert run["mesh_devices"] == 2
    rows = {r["method"]: r for r in sweep_results.read_results_csv(str(workdir / "results.csv"))}
    assert rows["sgan"]["test_accuracy"] == run["test_accuracy"]
    assert rows["supervised"]["test_accuracy"] == run["supervised_test_accuracy"]


EIGHT_DEVICES = textwrap.dedent(
    """
    import json, sys
    import jax
    from sgan_jax import train
    from tests.conftest import load_config, tiny

    assert jax.local_device_count() == 8, jax.devices()
    out = sys.argv[1]
    results = {}
    # The defaults: one run, one device, for both recipes (a batch of 100 splits 8 ways not).
    for name in ("sgan_mnist", "improved_mnist"):
        config = tiny(load_config(name), num_iterations=10, supervised_epochs=1)
        results[name] = train.train_and_evaluate(config, f"{out}/{name}")
    # 3 vmapped seeds: spread over the 3 devices that divide them; then each seed's baseline,
    # whose batch of 100 does not split 3 ways.
    seeds = [
        tiny(load_config("improved_mnist"), seed=s, data_seed=s, num_iterations=10,
             supervised_epochs=1)
        for s in (0, 1, 2)
    ]
    results["seeds"] = train.train_and_evaluate_seeds(seeds, [f"{out}/seed{s}" for s in (0, 1, 2)])
    json.dump(results, open(out + "/summary.json", "w"))
    """
)


def test_eight_devices_run_both_recipes_and_a_seed_group(mnist, tmp_path):
    summary = _run_with_devices(EIGHT_DEVICES, 8, tmp_path)
    for name in ("sgan_mnist", "improved_mnist"):
        assert summary[name]["mesh_devices"] == 1 and summary[name]["num_devices"] == 8
        assert summary[name]["supervised_test_accuracy"] > 0.1
    for seed in summary["seeds"]:
        assert seed["mesh_devices"] == 3 and seed["vectorized_seeds"] == 3
        assert seed["supervised_test_accuracy"] > 0.1
