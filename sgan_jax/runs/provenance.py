"""What produced a result: the XLA settings in force (the deterministic-ops flag is put in the
environment here, before jax starts its backends), library versions, the device, the host's CPU
and usable cores, and the commit.
"""

import functools
import importlib.metadata
import os
import platform
import subprocess

import jax
from jax._src import xla_bridge  # backends_are_initialized: there is no public equivalent

from sgan_jax.runs.errors import ConfigError

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.cache  # the code this process loaded: a sweep's later runs must not see a newer HEAD
def git_commit() -> str:
    """The commit of this checkout, with "-dirty" if it has uncommitted changes."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def apply_xla_settings(config) -> None:
    """With `deterministic`, adds XLA's deterministic-ops flag to XLA_FLAGS, which XLA reads once,
    when jax starts its backends. Started without it, a GPU run is refused; a CPU run is
    deterministic anyway (for a fixed core count)."""
    if not config.deterministic:
        return
    current = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_FLAG in current.split():
        return
    if not xla_bridge.backends_are_initialized():
        os.environ["XLA_FLAGS"] = f"{current} {DETERMINISTIC_FLAG}".strip()
    elif jax.default_backend() == "gpu":
        raise ConfigError(
            "deterministic",
            f"jax started without {DETERMINISTIC_FLAG}; run experiments/train.py, or set it in "
            "XLA_FLAGS before jax starts",
        )


def _cpu_model() -> str:
    """The CPU's name as Linux reports it, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict:
    """The CPU and the cores this process may use. XLA:CPU splits its work by the usable cores,
    which changes float rounding: a CPU run repeats bit for bit only with as many of them."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return dict(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count(),
        cpu_cores_usable=len(usable) if usable is not None else os.cpu_count(),
        python=platform.python_version(),
    )


def machine_and_code() -> dict:
    """Where and with what a result was computed: host, versions, devices, git commit."""
    return dict(
        host=host(),
        versions={p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")},
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        num_devices=jax.device_count(),
        git_commit=git_commit(),
    )


def provenance(config) -> dict:
    return dict(
        **machine_and_code(),
        matmul_precision=config.matmul_precision,
        deterministic=config.deterministic,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )
