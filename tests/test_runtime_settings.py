"""How a run executes: accelerator installs, the GPU check's bundle, matmul precision, XLA's
deterministic ops, and the TensorBoard event files."""

import configparser
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import jax
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sgan_jax.training import train

from .conftest import REPO, read_rows, tiny


def test_accelerator_extras_pin_the_jax_of_requirements():
    pinned = re.search(r"^jax==(\S+)$", open(os.path.join(REPO, "requirements.txt")).read(), re.M)
    setup = configparser.ConfigParser()
    setup.read(os.path.join(REPO, "setup.cfg"))
    extras = setup["options.extras_require"]
    assert set(extras) == {"cuda12", "cuda13", "tpu"}
    for name, requirement in extras.items():
        assert requirement.strip() == f"jax[{name}]=={pinned.group(1)}", name
    dry = subprocess.run(
        ["make", "-n", "-B", "setup", "ACCELERATOR=cuda12"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert '-e ".[cuda12]"' in dry.stdout, dry.stdout + dry.stderr
    bad = subprocess.run(["make", "setup", "ACCELERATOR=rocm"], cwd=REPO, capture_output=True)
    assert bad.returncode != 0 and b"ACCELERATOR" in bad.stderr


# Required by tfds but never imported when a run loads the cached MNIST arrays (checked by
# `make gpu-rehearsal`, whose image-like venv lacks them): the bundle leaves them out.
NOT_IMPORTED_WHEN_LOADING = {
    "pyarrow",
    "requests",
    "certifi",
    "charset-normalizer",
    "idna",
    "urllib3",
    "termcolor",
    "attrs",
}


def _make_list(name: str) -> set[str]:
    """The canonical distribution names of a Makefile variable that lists requirements."""
    makefile = open(os.path.join(REPO, "Makefile")).read()
    value = re.search(rf"^{name} \??:?= (.*?)(?<!\\)$", makefile, re.M | re.S).group(1)
    return {canonicalize_name(Requirement(item).name) for item in value.replace("\\", " ").split()}


def _requirement_closure(roots) -> set[str]:
    """The installed distributions that roots need, transitively (extras and markers that do not
    apply here left out), by canonical name."""
    seen, todo = set(), [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if not requirement.marker or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_gpu_bundle_holds_what_a_gpu_image_lacks():
    image = _requirement_closure(_make_list("GPU_IMAGE"))
    needed = _requirement_closure(["ml_collections", "tensorflow-datasets", "tensorboardX"])
    bundle = _make_list("GPU_WHEELS") | _make_list("GPU_SOURCE_WHEELS")
    missing = needed - image - NOT_IMPORTED_WHEN_LOADING - bundle
    assert not missing, f"add to the Makefile's GPU_WHEELS: {sorted(missing)}"


@pytest.mark.parametrize("precision", ["highest", "default"])
def test_matmul_precision_is_in_force_while_training(tutorial_config, monkeypatch, precision):
    seen = {}

    def fake_train(configs, workdirs, stop):
        seen["precision"] = jax.config.jax_default_matmul_precision
        return [{}]

    monkeypatch.setattr(train, "_train", fake_train)
    train.train_and_evaluate(tiny(tutorial_config, matmul_precision=precision), "unused")
    assert seen["precision"] == (None if precision == "default" else precision)


def test_deterministic_sets_xla_flag_before_jax_starts():
    script = (
        "import os, jax; from sgan_jax.runs import provenance\n"
        "from tests.conftest import load_config\n"
        "config = load_config('sgan_mnist'); config.deterministic = True\n"
        "provenance.apply_xla_settings(config); jax.devices()\n"
        "provenance.apply_xla_settings(config)\n"  # started on CPU already: nothing to do
        "print(os.environ['XLA_FLAGS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(env, JAX_PLATFORMS="cpu", PYTHONPATH=REPO),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["--xla_gpu_deterministic_ops=true"]


def test_event_files_hold_the_logged_scalars_and_samples(reference_run):
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(
        str(reference_run), size_guidance={"scalars": 0, "images": 0}
    )
    events.Reload()
    rows = read_rows(reference_run)
    for key in ("g_loss", "d_loss_supervised", "train_accuracy", "test_accuracy", "it_per_s"):
        logged = [(r["step"], r[key]) for r in rows if key in r]
        read = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in read] == [s for s, _ in logged], key
        for (_, a), (_, b) in zip(read, logged, strict=True):
            assert a == pytest.approx(b, rel=1e-6), key
    rates = events.Scalars("learning_rate")
    assert [e.step for e in rates] == [r["step"] for r in rows if "g_loss" in r]
    assert all(e.value == pytest.approx(2e-4) for e in rates)
    samples = events.Images("samples")
    assert [e.step for e in samples] == [10, 20]
    assert samples[0].width == samples[0].height == 4 * 28
    assert json.load(open(reference_run / "results.json"))["matmul_precision"] == "default"
