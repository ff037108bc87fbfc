"""Several processes: jax.distributed over localhost, one CPU device each."""

import os
import signal
import subprocess
import time

from .conftest import TINY, assert_rows_close, cli_env, read_results, read_rows, script_command


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two_processes(script: str, *args) -> list[subprocess.Popen]:
    """Starts experiments/<script> as 2 jax.distributed processes on localhost."""
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


def test_two_processes_train_like_one_process(reference_run, tmp_path):
    """Multi-host, on one machine: a sweep's run over 2 processes of 1 CPU device each
    (jax.distributed over localhost) trains like the 1-device reference run, its batch split
    over the 2 processes. A SIGTERM to process 1 alone stops both at the same step, with a
    checkpoint there; the same commands resume them, and only process 0 writes files and prints
    the sweep's summary."""
    from sgan_jax.sweeps import sweep_results

    sweep = tmp_path / "sweep"
    # The reference run's config: the sweep's run for 100 labels and seed 0 is that run.
    sweep_args = (f"--workdir={sweep}", "--num_labeled=100", "--seeds=0", *TINY)
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
    assert "Per run:" in outputs[0][0] and "Per run:" not in outputs[1][0]  # one summary
    assert sorted(os.listdir(sweep)) == [
        "accuracy_vs_labels.png",
        "accuracy_vs_steps.png",
        "curves.csv",
        "labels100_seed0",
        "results.csv",
        "summary.md",
    ]
    one, two = read_results(reference_run), read_results(sweep / "labels100_seed0")
    assert one["mesh_devices"] == 1 and two["mesh_devices"] == 2
    assert_rows_close(read_rows(sweep / "labels100_seed0"), read_rows(reference_run))
    for key in ("test_accuracy", "supervised_test_accuracy"):
        assert abs(one[key] - two[key]) <= 5e-3, key
    assert sorted(os.listdir(sweep / "labels100_seed0" / "checkpoints")) == ["10", "15", "20"]
    rows = {r["method"]: r for r in sweep_results.read_results_csv(str(sweep / "results.csv"))}
    assert rows["sgan"]["test_accuracy"] == two["test_accuracy"]
    assert rows["supervised"]["test_accuracy"] == two["supervised_test_accuracy"]
