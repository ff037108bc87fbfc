"""What produced a result: library versions, the device and the git commit."""

import importlib.metadata
import os
import subprocess

import jax


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """The commit of this checkout, with "-dirty" if it has uncommitted changes."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def provenance() -> dict:
    return dict(
        versions={p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")},
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        num_devices=jax.device_count(),
        git_commit=git_commit(),
    )
