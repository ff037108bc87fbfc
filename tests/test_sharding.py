"""Many devices: simulated CPU devices, in a subprocess, as XLA reads the flag at start."""

import json
import subprocess
import sys
import textwrap

from .conftest import REPO, assert_rows_close, cli_env

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
    # 2 vmapped seeds spread over 2 devices: seed 0 against the default above.
    spread = [config(seed=s, num_devices=2) for s in (0, 1)]
    summary["spread"] = train.train_and_evaluate_seeds(spread, [f"{out}/spread{s}" for s in (0, 1)])
    # 3 vmapped seeds by default: spread over the 3 devices that divide them; then each seed's
    # baseline, whose batch of 100 does not split 3 ways.
    seeds = [config("improved_mnist", seed=s, data_seed=s, supervised_epochs=1) for s in (0, 1, 2)]
    summary["seeds"] = train.train_and_evaluate_seeds(seeds, [f"{out}/seed{s}" for s in (0, 1, 2)])
    summary["rows"] = {name: read_rows(f"{out}/{name}") for name in
                       ("sgan_mnist", "four", "spread0", "spread1")}
    json.dump(summary, open(out + "/summary.json", "w"))
    """
)


def _run_with_devices(script: str, count: int, out) -> dict:
    """Runs a script in a subprocess that sees `count` simulated CPU devices; its summary.json."""
    env = cli_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", PYTHONPATH=REPO)
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
    assert_rows_close(rows["four"], rows["sgan_mnist"])
    assert abs(four["test_accuracy"] - one["test_accuracy"]) <= 5e-3
    assert summary["spread"][0]["mesh_devices"] == 2
    assert_rows_close(rows["spread0"], rows["sgan_mnist"])
    assert abs(summary["spread"][0]["test_accuracy"] - one["test_accuracy"]) <= 5e-3
    assert rows["spread1"][0]["g_loss"] != rows["spread0"][0]["g_loss"]
    for seed in summary["seeds"]:
        assert seed["mesh_devices"] == 3 and seed["vectorized_seeds"] == 3
        assert seed["supervised_test_accuracy"] > 0.1
