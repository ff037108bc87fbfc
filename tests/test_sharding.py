"""Many devices: simulated CPU devices (in a subprocess, as XLA reads the flag at start), and
several processes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from .conftest import COMPILATION_CACHE, DATA_DIR, MANUAL_DIR, REPO, script_command

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from sgan_jax import train
    from tests.conftest import load_config, read_rows, tiny

    assert jax.local_device_count() == 8, jax.devices()
    out = sys.argv[1]

    def config(name="sgan_mnist", **overrides):
        return tiny(load_config(name), **{"num_iterations": 10, "supervised_epochs": 0,
                                          **overrides})

    summary = {}
    # The defaults: one run, one device, for both recipes (a batch of 100 splits 8 ways not).
    for name in ("sgan_mnist", "improved_mnist"):
        summary[name] = train.train_and_evaluate(config(name), f"{out}/{name}")
    # Data parallel: the tutorial's batch split over 4 devices, against the default above.
    summary["four"] = train.train_and_evaluate(config(num_devices=4), out + "/four")
    # 2 vmapped seeds spread over 2 devices, against the same seeds packed on 1.
    spread = [config(seed=s, num_devices=2) for s in (0, 1)]
    summary["spread"] = train.train_and_evaluate_seeds(spread, [f"{out}/spread{s}" for s in (0, 1)])
    packed = [config(seed=s, num_devices=1) for s in (0, 1)]
    summary["packed"] = train.train_and_evaluate_seeds(packed, [f"{out}/packed{s}" for s in (0, 1)])
    # 3 vmapped seeds by default: spread over the 3 devices that divide them; then each seed's
    # baseline, whose batch of 100 does not split 3 ways.
    seeds = [config("improved_mnist", seed=s, data_seed=s, supervised_epochs=1) for s in (0, 1, 2)]
    summary["seeds"] = train.train_and_evaluate_seeds(seeds, [f"{out}/seed{s}" for s in (0, 1, 2)])
    summary["rows"] = {name: read_rows(f"{out}/{name}") for name in
                       ("sgan_mnist", "four", "spread0", "packed0", "spread1", "packed1")}
    json.dump(summary, open(out + "/summary.json", "w"))
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


def test_eight_devices_run_both_recipes_split_batches_and_spread_seeds(mnist, tmp_path):
    summary = _run_with_devices(SCRIPT, 8, tmp_path)
    for name in ("sgan_mnist", "improved_mnist"):
        assert summary[name]["mesh_devices"] == 1 and summary[name]["num_devices"] == 8
    one, four, rows = summary["sgan_mnist"], summary["four"], summary["rows"]
    assert four["mesh_devices"] == 4
    _close(rows["four"], rows["sgan_mnist"])
    assert abs(four["test_accuracy"] - one["test_accuracy"]) <= 5e-3
    assert summary["spread"][0]["mesh_devices"] == 2
    for seed in (0, 1):
        _close(rows[f"spread{seed}"], rows[f"packed{seed}"])
        assert (
            abs(summary["spread"][seed]["test_accuracy"] - summary["packed"][seed]["test_accuracy"])
            <= 5e-3
        )
    for seed in summary["seeds"]:
        assert seed["mesh_devices"] == 3 and seed["vectorized_seeds"] == 3
        assert seed["supervised_test_accuracy"] > 0.1


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
            script_command(
                script,
                *args,
                "--distributed",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ),
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
    """Multi-host, on one machine: a sweep's run over 2 processes of 1 CPU device each
    (jax.distributed over localhost) trains like 1 process with 2 devices. A SIGTERM to process 1
    alone stops both at the same step, with a checkpoint there; the same commands resume them,
    and only process 0 writes files and prints the sweep's summary."""
    from sgan_jax import sweep_results

    from .conftest import TINY, cli_env, read_results, read_rows, run_script

    args = (*TINY, "--config.supervised_epochs=1")
    run_script(
        "train.py",
        f"--workdir={tmp_path / 'one'}",
        *args,
        "--config.num_devices=2",
        env=cli_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    )
    sweep = tmp_path / "sweep"
    sweep_args = (f"--workdir={sweep}", "--num_labeled=100", "--seeds=0", *args)
    processes = _start_two_processes("sweep.py", *sweep_args)
    rows_file = sweep / "labels100_seed0" / "metrics.jsonl"
    while not (rows_file.exists() and rows_file.stat().st_size):
        assert processes[0].poll() is None, processes[0].communicate()[1][-4000:]
        time.sleep(0.02)
    processes[1].send_signal(signal.SIGTERM)
    stopped = [p.communicate(timeout=120)[1].strip().splitlines()[-1] for p in processes]
    assert [p.returncode for p in processes] == [75, 75], stopped
    assert stopped[0] == stopped[1] and stopped[0].startswith("stopped by SIGTERM; checkpoint")
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert step < 20 and (sweep / "labels100_seed0" / "checkpoints" / str(step)).is_dir()
    outputs = _run_two_processes("sweep.py", *sweep_args)
    assert "recipe" in outputs[0][0] and "recipe" not in outputs[1][0]  # one summary
    assert sorted(os.listdir(sweep)) == [
        "accuracy_vs_labels.png",
        "accuracy_vs_steps.png",
        "curves.csv",
        "labels100_seed0",
        "results.csv",
        "summary.md",
    ]
    one, two = read_results(tmp_path / "one"), read_results(sweep / "labels100_seed0")
    assert one["mesh_devices"] == two["mesh_devices"] == 2
    _close(read_rows(sweep / "labels100_seed0"), read_rows(tmp_path / "one"))
    for key in ("test_accuracy", "supervised_test_accuracy"):
        assert abs(one[key] - two[key]) <= 5e-3, key
    assert sorted(os.listdir(sweep / "labels100_seed0" / "checkpoints")) == ["10", "15", "20"]
    rows = {r["method"]: r for r in sweep_results.read_results_csv(str(sweep / "results.csv"))}
    assert rows["sgan"]["test_accuracy"] == two["test_accuracy"]
    assert rows["supervised"]["test_accuracy"] == two["supervised_test_accuracy"]
