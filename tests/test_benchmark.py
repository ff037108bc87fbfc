"""experiments/benchmark.py: its last line is the JSON the speed comparisons read."""

import json

from .conftest import run_script


def test_benchmark_prints_json_last():
    result = run_script("benchmark.py", "--iterations=3", "--batch_size=16", "--warmup=1")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["batch_size"] == 16 and report["iterations"] == 3
    assert report["backend"] == "cpu" and report["device"]
    assert report["it_per_s"] > 0 and report["compile_seconds"] > 0
    assert report["model"] == "tutorial" and report["steps_per_dispatch"] == 1


def test_benchmark_improved_recipe_in_chunks():
    result = run_script(
        "benchmark.py",
        "--config=experiments/configs/improved_mnist.py",
        "--iterations=4",
        "--warmup=2",
        "--config.steps_per_dispatch=2",
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"] == "improved" and report["batch_size"] == 100
    assert report["steps_per_dispatch"] == 2 and report["iterations"] == 4
