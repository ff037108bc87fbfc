"""train_and_evaluate: one SGAN run and its supervised baseline, with every output in a workdir.

workdir/
  config.json       the config (a rerun with another config, run length aside, is refused)
  metrics.jsonl     a row per log / eval step: losses, accuracies, it/s
  samples/          4x4 generator grids, step_XXXXXXX.png
  plots/            loss and accuracy curves, the baseline's history
  checkpoints/      orbax; a rerun resumes from the newest readable one
  best_checkpoint/  the state with the best validation accuracy (when num_validation > 0)
  supervised.json   the baseline's result, once it is done
  results.json      the summary
"""

import json
import math
import os
import time

import jax
import numpy as np
from absl import logging

from sgan_jax import (
    checkpointing,
    config_checks,
    input_pipeline,
    metrics,
    models,
    plots,
    provenance,
    sharding,
    steps,
    supervised,
)
from sgan_jax.errors import ConfigError, NonFiniteError
from sgan_jax.state import METRIC_NAMES, create_train_state, stream

# Keys that may change when a run is continued: only its length.
RUN_LENGTH_KEYS = ("num_iterations",)


def _config_dict(config) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def prepare_workdir(workdir: str, config) -> None:
    """Creates the workdir and records the config, refusing one that differs from a saved one."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ConfigError("workdir", f"cannot create {workdir}: {error.strerror}") from None
    if not os.access(workdir, os.W_OK):
        raise ConfigError("workdir", f"{workdir} is not writable")
    path = os.path.join(workdir, "config.json")
    current = _config_dict(config)
    if os.path.exists(path):
        saved = metrics.read_json(path)
        differing = sorted(
            key
            for key in set(saved) | set(current)
            if key not in RUN_LENGTH_KEYS and saved.get(key) != current.get(key)
        )
        if differing:
            details = ", ".join(
                f"{k}={current.get(k)!r} (saved {saved.get(k)!r})" for k in differing
            )
            raise ConfigError(
                "config", f"differs from {path} in {details}; use a new workdir to start over"
            )
    metrics.atomic_write_json(path, current)


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class _EvalTracker:
    """Best validation accuracy so far, and evals since it improved (for early stopping)."""

    def __init__(self, rows: list[dict], patience: int):
        self.patience = patience
        self.best = None  # the eval row with the best validation accuracy
        self.since_best = 0
        for row in rows:
            if "validation_accuracy" in row:
                self.update(row)

    def update(self, row: dict) -> bool:
        """Records an eval row; True if it is the new best."""
        if self.best is None or row["validation_accuracy"] > self.best["validation_accuracy"]:
            self.best, self.since_best = row, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience


def _is_boundary(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _steps_to_next_boundary(step: int, config) -> int:
    candidates = [config.num_iterations - step]
    for every in (
        config.log_every,
        config.eval_every,
        config.sample_every,
        config.checkpoint_every,
    ):
        if every > 0:
            candidates.append(every - step % every)
    return min(candidates)


def _init_images(config, dataset, split) -> np.ndarray:
    """Real unlabeled images for the data-dependent initialisation, chosen by the seed."""
    count = config.init_batch_size or config.batch_size
    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(split.unlabeled, count, replace=count > len(split.unlabeled))
    return input_pipeline.scale_images(dataset.train_images[chosen], config.image_range)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains SGAN (resuming from workdir's checkpoints) and the supervised baseline."""
    wall_start = time.time()
    config_checks.check_config(config)
    data_dir, manual_dir = input_pipeline.resolve_dirs(config)
    dataset = input_pipeline.load_dataset(config.dataset, data_dir, manual_dir)
    mesh = sharding.make_mesh(config.num_devices)
    config_checks.check_config_against_data(
        config, len(dataset.train_labels), dataset.num_classes, mesh.size
    )
    split = input_pipeline.select_labels(
        dataset.train_labels,
        config.num_labeled,
        config.label_selection,
        dataset.num_classes,
        config.data_seed,
        config.num_validation,
    )
    prepare_workdir(workdir, config)
    for folder in ("samples", "plots"):
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)

    generator, discriminator = models.create_models(
        config, dataset.image_shape, dataset.num_classes
    )

    def place(tree):
        return sharding.replicate(tree, mesh)

    data = place(input_pipeline.device_data(dataset, split))
    test_set = place((dataset.test_images, dataset.test_labels))
    validation_set = place(
        (dataset.train_images[split.validation], dataset.train_labels[split.validation])
    )
    state = place(
        create_train_state(config, generator, discriminator, _init_images(config, dataset, split))
    )
    param_counts = {
        "generator": sum(x.size for x in jax.tree.leaves(state.generator.params)),
        "discriminator": sum(x.size for x in jax.tree.leaves(state.discriminator.params)),
    }
    checkpointer = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.keep_checkpoints
    )
    restored, start_step = checkpointer.restore_latest(state)
    if restored is not None:
        if start_step > config.num_iterations:
            raise ConfigError(
                "num_iterations",
                f"{config.num_iterations} is below the checkpointed step {start_step}",
            )
        state = restored
        logging.info("Resumed from the checkpoint at step %d.", start_step)
        print(f"Resumed from step {start_step} ({checkpointer.steps()})", flush=True)
    writer = metrics.MetricsWriter(os.path.join(workdir, "metrics.jsonl"), start_step)
    tracker = _EvalTracker(writer.rows, config.early_stopping_patience)
    best_checkpointer = (
        checkpointing.Checkpointer(os.path.join(workdir, "best_checkpoint"), 1)
        if config.num_validation
        else None
    )

    train_step = steps.make_train_step(
        config, generator, discriminator, sharding.make_shard_batch(mesh)
    )
    step_once = jax.jit(train_step, donate_argnums=0)
    step_many = jax.jit(steps.make_train_steps(train_step), donate_argnums=0, static_argnums=2)
    evaluate = jax.jit(
        steps.make_evaluate(discriminator, config.image_range, config.eval_batch_size)
    )
    generate = jax.jit(steps.make_generate(generator, config), static_argnums=2)
    sample_key = stream(jax.random.key(config.seed), "samples")
    steps_per_dispatch = config.steps_per_dispatch or (1 if jax.default_backend() == "cpu" else 100)

    def save_samples(step):
        images = np.asarray(generate(state.generator.params, sample_key, 16))
        plots.save_sample_grid(images, os.path.join(workdir, "samples", f"step_{step:07d}.png"))

    def evaluate_all(params) -> dict:
        result = {"test_accuracy": float(evaluate(params, *test_set))}
        if config.num_validation:
            result["validation_accuracy"] = float(evaluate(params, *validation_set))
        return result

    step = start_step
    train_seconds, steps_timed = 0.0, 0
    mark, last_boundary = time.time(), step
    while step < config.num_iterations and not tracker.should_stop:
        count = min(steps_per_dispatch, _steps_to_next_boundary(step, config))
        state = step_once(state, data) if count == 1 else step_many(state, data, count)
        step += count
        final = step == config.num_iterations
        is_log = _is_boundary(step, config.log_every) or final
        is_eval = _is_boundary(step, config.eval_every) or final
        is_checkpoint = _is_boundary(step, config.checkpoint_every) or final
        if not (is_log or is_eval or is_checkpoint or _is_boundary(step, config.sample_every)):
            continue
        host = jax.device_get(
            dict(
                nonfinite_step=state.nonfinite_step,
                nonfinite_metric=state.nonfinite_metric,
                nonfinite_value=state.nonfinite_value,
                metric_sums=state.metric_sums,
                metric_count=state.metric_count,
            )
        )
        # Time spent training since the last boundary (its host work excluded).
        train_seconds += time.time() - mark
        steps_timed += step - last_boundary
        if host["nonfinite_step"] >= 0:
            saved = checkpointer.steps()
            raise NonFiniteError(
                int(host["nonfinite_step"]) + 1,
                METRIC_NAMES[int(host["nonfinite_metric"])],
                float(host["nonfinite_value"]),
                saved[-1] if saved else None,
            )
        row = {"step": step}
        if is_log:
            means = host["metric_sums"] / max(int(host["metric_count"]), 1)
            row.update({name: float(v) for name, v in zip(METRIC_NAMES, means, strict=True)})
        if is_eval:
            row.update(evaluate_all(state.eval_params()))
            if best_checkpointer is not None and tracker.update(row):
                best_checkpointer.save(step, state)
        if is_log:
            rate = steps_timed / train_seconds if train_seconds else float("nan")
            row["it_per_s"] = rate
            row["elapsed_seconds"] = time.time() - wall_start
            eta = (config.num_iterations - step) / rate if rate == rate and rate else 0.0
            evals = "".join(
                f"  {k.split('_')[0]} {100 * row[k]:.2f}%"
                for k in ("test_accuracy", "validation_accuracy")
                if k in row
            )
            logging.info(
                "step %d/%d  d_sup %.4f  d_unsup %.4f  g %.4f  train_acc %.1f%%%s  "
                "%.2f it/s  ETA %s",
                step,
                config.num_iterations,
                row["d_loss_supervised"],
                row["d_loss_unsupervised"],
                row["g_loss"],
                100 * row["train_accuracy"],
                evals,
                rate,
                _format_duration(eta),
            )
            train_seconds, steps_timed = 0.0, 0
        if _is_boundary(step, config.sample_every) or final:
            save_samples(step)
        writer.write(row)
        if is_checkpoint or tracker.should_stop:
            checkpointer.save(step, state)
        mark, last_boundary = time.time(), step

    final_eval = evaluate_all(state.eval_params())
    if start_step == step and not os.path.exists(
        os.path.join(workdir, "samples", f"step_{step:07d}.png")
    ):
        save_samples(step)
    if not checkpointer.steps() or checkpointer.steps()[-1] != step:
        checkpointer.save(step, state)
    checkpointer.close()
    plots.plot_training_curves(writer.rows, os.path.join(workdir, "plots", "sgan_curves.png"))
    plots.plot_supervised_loss(writer.rows, os.path.join(workdir, "plots", "supervised_loss.png"))

    baseline = _supervised_baseline(
        config,
        workdir,
        discriminator,
        dataset,
        split,
        evaluate,
        place,
        sharding.make_shard_batch(mesh),
    )
    results = dict(
        dataset=config.dataset,
        num_labeled=config.num_labeled,
        label_selection=config.label_selection,
        seed=config.seed,
        data_seed=config.data_seed,
        num_iterations=config.num_iterations,
        final_step=step,
        stopped_early=step < config.num_iterations,
        test_accuracy=final_eval["test_accuracy"],
        supervised_test_accuracy=baseline.get("test_accuracy"),
        params=param_counts,
        wall_seconds=time.time() - wall_start,
        **provenance.provenance(),
    )
    if config.num_validation:
        best = tracker.best or {}
        results.update(
            validation_accuracy=final_eval["validation_accuracy"],
            best_validation_accuracy=best.get("validation_accuracy"),
            best_validation_step=best.get("step"),
            selected_test_accuracy=best.get("test_accuracy"),
            supervised_validation_accuracy=baseline.get("validation_accuracy"),
        )
    metrics.atomic_write_json(os.path.join(workdir, "results.json"), results)
    _print_table(results)
    return results


def _supervised_baseline(
    config, workdir, discriminator, dataset, split, evaluate, place, shard_batch
) -> dict:
    """The baseline's result, trained once per workdir (supervised.json keeps it)."""
    if not config.supervised_epochs:
        return {}
    path = os.path.join(workdir, "supervised.json")
    if os.path.exists(path):
        return metrics.read_json(path)
    result = supervised.train_supervised(
        config, discriminator, dataset, split, evaluate, place, shard_batch
    )
    metrics.atomic_write_json(path, result)
    plots.plot_baseline_history(
        result["history"], os.path.join(workdir, "plots", "supervised_baseline.png")
    )
    logging.info("Supervised baseline: test accuracy %.4f", result["test_accuracy"])
    return result


def _print_table(results: dict) -> None:
    rows = [("SGAN", results["test_accuracy"])]
    if "selected_test_accuracy" in results and results["selected_test_accuracy"] is not None:
        rows.append(
            (
                f"SGAN, best validation (step {results['best_validation_step']})",
                results["selected_test_accuracy"],
            )
        )
    if results["supervised_test_accuracy"] is not None:
        rows.append(("supervised baseline", results["supervised_test_accuracy"]))
    width = max(len(name) for name, _ in rows)
    print(
        f"\n{results['dataset']}, {results['num_labeled']} labels, seed {results['seed']}, "
        f"{results['final_step']} iterations"
    )
    print(f"{'method'.ljust(width)}  test accuracy")
    for name, accuracy in rows:
        value = f"{100 * accuracy:.2f}%" if not math.isnan(accuracy) else "nan"
        print(f"{name.ljust(width)}  {value}")
