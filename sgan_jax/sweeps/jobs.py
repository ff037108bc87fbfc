"""Several runs at once on one host (`sweep.py --jobs=N`): a slot per GPU, or per group of CPU
cores, each run a `train.py` process of its own.

A process per run keeps each run's devices its own: on GPUs through CUDA_VISIBLE_DEVICES, set
before the child's jax starts; on CPUs through the child's CPU affinity, which XLA:CPU sizes its
thread pool by. Each run logs to `train.log` in its folder. A stop signal to the sweep is passed
on to the runs, which checkpoint and stop; the sweep then stops too.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from sgan_jax.runs import cli
from sgan_jax.runs.errors import ConfigError, Preempted, RunsFailed

_PROBE = "import jax, json; print(json.dumps([jax.default_backend(), jax.local_device_count()]))"


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one run executes: extra environment, and the CPU cores it may use (None: all)."""

    env: dict
    cores: tuple | None = None

    def describe(self) -> str:
        if self.cores is not None:
            return f"cores {','.join(map(str, self.cores))}"
        return ", ".join(f"{k}={v}" for k, v in self.env.items())


def probe_devices() -> tuple[str, int]:
    """(backend, local device count) as a child process sees them; the sweep's own process never
    starts a backend, so it holds no GPU memory."""
    output = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    backend, count = json.loads(output.strip().splitlines()[-1])
    return backend, int(count)


def make_slots(jobs: int, backend: str, device_count: int) -> list[Slot]:
    """`jobs` slots: the GPUs, or the CPU cores this process may use, dealt out evenly."""
    if backend == "gpu":
        if jobs > device_count:
            raise ConfigError("jobs", f"{jobs} jobs but {device_count} GPUs")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(device_count)]
        return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(ids[i::jobs])}) for i in range(jobs)]
    if backend == "cpu":
        cores = sorted(os.sched_getaffinity(0))
        if jobs > len(cores):
            raise ConfigError("jobs", f"{jobs} jobs but {len(cores)} CPU cores")
        per_slot = len(cores) // jobs
        return [Slot({}, tuple(cores[i * per_slot : (i + 1) * per_slot])) for i in range(jobs)]
    raise ConfigError(
        "jobs", f"runs several runs per host on GPUs or CPUs, not {backend}; use --num_shards"
    )


def _start(command: list[str], slot: Slot, log_path: str) -> subprocess.Popen:
    env = {**os.environ, **slot.env, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "a")  # noqa: SIM115 - the child writes to it; closed when it ends
    cores = slot.cores
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores is not None else None,
    )
    log.close()  # the child holds its own copy of the descriptor
    return process


def run_all(runs: list[tuple[str, list[str], str]], slots: list[Slot], on_end=None) -> None:
    """Runs each (name, command, log path), at most one per slot at a time, calling `on_end()`
    after each run that finishes.

    Raises ConfigError naming the runs that failed, or Preempted after passing on a stop signal.
    """
    pending, active, failed = list(runs), {}, []
    stop = {"signal": None}

    def forward(signum, frame):
        stop["signal"] = signal.Signals(signum).name
        for process, _ in active.values():
            process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while pending or active:
            for index, slot in enumerate(slots):
                if index not in active and pending and stop["signal"] is None:
                    name, command, log_path = pending.pop(0)
                    print(f"start {name} on {slot.describe()} (log: {log_path})", flush=True)
                    active[index] = (_start(command, slot, log_path), name)
            for index, (process, name) in list(active.items()):
                if process.poll() is not None:
                    del active[index]
                    print(f"end {name}: exit {process.returncode}", flush=True)
                    if process.returncode not in (0, cli.EXIT_PREEMPTED):
                        failed.append(name)
                    elif process.returncode == 0 and on_end is not None:
                        on_end()
            if stop["signal"] is not None and not active:
                raise Preempted(stop["signal"], None)
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        raise RunsFailed(failed)
