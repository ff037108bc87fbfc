"""experiments/evaluate.py: a saved checkpoint evaluated again gives the figures the run
reported, per class, and writes nothing in the run's workdir."""

import json
import os

import numpy as np
import pytest

from sgan_jax.runs import checkpointing
from sgan_jax.runs.errors import ConfigError
from sgan_jax.training import evaluation
from tests.conftest import DATA_DIR, MANUAL_DIR, TEST_EXAMPLES, read_results, run_script
from tests.test_cli_errors import assert_clean_error


def test_summary_of_a_hand_computed_case():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 1, 1, 1, 2, 0, 1])
    summary = evaluation.summarize(labels, predictions, 3)
    assert summary["confusion_matrix"] == [[1, 2, 0], [0, 2, 0], [1, 1, 1]]
    assert summary["accuracy"] == 4 / 8
    assert summary["errors"] == 4 and summary["examples"] == 8
    assert summary["per_class_accuracy"] == [1 / 3, 1.0, 1 / 3]
    # The largest off-diagonal count first; ties in row-major order.
    assert summary["commonest_mistakes"] == [
        dict(true=0, predicted=1, count=2),
        dict(true=2, predicted=0, count=1),
        dict(true=2, predicted=1, count=1),
    ]


def _snapshot(folder) -> dict:
    return {
        os.path.join(root, name): os.stat(os.path.join(root, name)).st_mtime_ns
        for root, _, names in os.walk(folder)
        for name in names
    }


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", DATA_DIR)
    monkeypatch.setenv("SGAN_MANUAL_DIR", os.path.abspath(MANUAL_DIR))


def test_checkpoints_give_the_accuracies_the_run_reported(improved_reference_run, mnist, data_env):
    results = read_results(improved_reference_run)
    before = _snapshot(improved_reference_run)
    newest = evaluation.evaluate_checkpoint(str(improved_reference_run))
    best = evaluation.evaluate_checkpoint(str(improved_reference_run), "best")
    assert _snapshot(improved_reference_run) == before
    assert newest["step"] == results["final_step"]
    assert newest["evaluated_test"]["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
    assert newest["evaluated_validation"]["accuracy"] == pytest.approx(
        results["validation_accuracy"], abs=1e-6
    )
    assert best["step"] == results["best_validation_step"]
    assert best["evaluated_test"]["accuracy"] == pytest.approx(
        results["selected_test_accuracy"], abs=1e-6
    )
    # The EMA's run also shows its raw weights, which differ from the average after 10 steps.
    assert newest["raw_test"]["confusion_matrix"] != newest["evaluated_test"]["confusion_matrix"]
    counts = np.array(newest["evaluated_test"]["confusion_matrix"])
    assert counts.sum(axis=1).tolist() == np.bincount(mnist.test_labels[:TEST_EXAMPLES]).tolist()
    assert counts.shape == (10, 10)


def test_the_command_prints_and_writes_the_figures(reference_run, tmp_path):
    output = tmp_path / "evaluation.json"
    result = run_script("evaluate.py", f"--workdir={reference_run}", f"--output={output}")
    written = json.loads(output.read_text())
    accuracy = read_results(reference_run)["test_accuracy"]
    assert written["evaluated_test"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert "raw_test" not in written  # the tutorial recipe keeps no EMA: one set of weights
    printed = [line.split() for line in result.stdout.splitlines()]
    assert ["evaluated_test", f"{100 * accuracy:.2f}%"] in [line[:2] for line in printed]
    assert "commonest mistakes:" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir={empty}"], "workdir: "),
        (["--workdir={run}", "--step=3"], "step: 3 is not saved"),
    ],
)
def test_bad_input_is_one_line(reference_run, tmp_path, args, message):
    args = [a.format(empty=tmp_path, run=reference_run) for a in args]
    before = _snapshot(reference_run)
    result = run_script("evaluate.py", *args, check=False)
    assert result.returncode == 2
    assert_clean_error(result, message)
    assert _snapshot(reference_run) == before and os.listdir(tmp_path) == []


def test_a_refused_step_still_closes_the_checkpointer(reference_run, monkeypatch):
    """The step is looked up after the Checkpointer opens; refusing it closes the Checkpointer
    (and its orbax manager) all the same."""
    closed = []
    close = checkpointing.Checkpointer.close
    monkeypatch.setattr(
        checkpointing.Checkpointer, "close", lambda self: closed.append(close(self))
    )
    with pytest.raises(ConfigError, match="3 is not saved"):
        evaluation.evaluate_checkpoint(str(reference_run), step=3)
    assert len(closed) == 1
