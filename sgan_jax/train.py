"""train_and_evaluate: an SGAN run and its supervised baseline, every output in a workdir.

workdir/
  config.json       the config (a rerun with another config, run length aside, is refused)
  metrics.jsonl     a row per log / eval step: losses, accuracies, it/s
  samples/          4x4 generator grids, step_XXXXXXX.png
  plots/            loss and accuracy curves, the baseline's history
  checkpoints/      orbax; a rerun resumes from the newest readable one
  best_checkpoint/  the state with the best validation accuracy (when num_validation > 0)
  supervised.json   the baseline's result, once it is done
  results.json      the summary

`train_and_evaluate_seeds` trains several seeds of one config in one compiled program
(`jax.vmap` over the state), each seed with its own workdir, exactly as separate runs would.
"""

import dataclasses
import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
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
# Keys that may differ between the seeds trained together by train_and_evaluate_seeds.
PER_SEED_KEYS = ("seed", "data_seed")


def _config_dict(config) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def create_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ConfigError("workdir", f"cannot create {workdir}: {error.strerror}") from None
    if not os.access(workdir, os.W_OK):
        raise ConfigError("workdir", f"{workdir} is not writable")


def prepare_workdir(workdir: str, config) -> None:
    """Creates the workdir and records the config, refusing one that differs from a saved one."""
    create_workdir(workdir)
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
    if sharding.is_primary():
        for folder in ("samples", "plots"):
            os.makedirs(os.path.join(workdir, folder), exist_ok=True)
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


@dataclasses.dataclass
class _Run:
    """The host-side bookkeeping of one seed."""

    config: object
    workdir: str
    split: input_pipeline.LabelSplit
    checkpointer: checkpointing.Checkpointer
    best_checkpointer: checkpointing.Checkpointer | None = None
    writer: metrics.MetricsWriter | None = None
    tracker: _EvalTracker | None = None


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


def _stack(trees):
    """Stacks same-shaped states along a new leading axis. Their static parts (apply_fn, tx)
    are equal but distinct objects, so the first one's tree structure is used for all."""
    leaves = [jax.tree.leaves(tree) for tree in trees]
    return jax.tree.unflatten(
        jax.tree.structure(trees[0]), [jnp.stack(xs) for xs in zip(*leaves, strict=True)]
    )


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains SGAN (resuming from workdir's checkpoints) and the supervised baseline."""
    return _train([config], [workdir], vectorized=False)[0]


def train_and_evaluate_seeds(configs, workdirs) -> list[dict]:
    """Like train_and_evaluate for each (config, workdir), with all the configs' seeds trained
    together by one vmapped step. The configs may differ only in `seed` and `data_seed`."""
    reference = {k: v for k, v in _config_dict(configs[0]).items() if k not in PER_SEED_KEYS}
    for config in configs[1:]:
        other = {k: v for k, v in _config_dict(config).items() if k not in PER_SEED_KEYS}
        if other != reference:
            differing = sorted(k for k in reference if reference[k] != other.get(k))
            raise ConfigError("config", f"seeds trained together differ in {differing}")
    if configs[0].early_stopping_patience:
        raise ConfigError("early_stopping_patience", "cannot stop one of several vmapped seeds")
    return _train(list(configs), list(workdirs), vectorized=True)


def _train(configs, workdirs, vectorized: bool) -> list[dict]:
    wall_start = time.time()
    config = configs[0]
    for c in configs:
        config_checks.check_config(c)
    origin = provenance.provenance()  # the code that runs, before anything changes it
    data_dir, manual_dir = input_pipeline.resolve_dirs(config)
    if sharding.is_primary():  # prepares the dataset if needed; the other processes wait
        dataset = input_pipeline.load_dataset(config.dataset, data_dir, manual_dir)
    sharding.sync("sgan_jax:dataset")
    if not sharding.is_primary():
        dataset = input_pipeline.load_dataset(config.dataset, data_dir, manual_dir)
    mesh = sharding.make_mesh(config.num_devices)
    if vectorized and len(configs) % mesh.size:
        raise ConfigError(
            "num_devices", f"{len(configs)} seeds cannot be split over {mesh.size} devices"
        )
    # Several seeds are spread over the devices; one seed's batch is.
    batch_devices = 1 if vectorized else mesh.size
    for c in configs:
        config_checks.check_config_against_data(
            c, len(dataset.train_labels), dataset.num_classes, batch_devices
        )
    splits = [
        input_pipeline.select_labels(
            dataset.train_labels,
            c.num_labeled,
            c.label_selection,
            dataset.num_classes,
            c.data_seed,
            c.num_validation,
        )
        for c in configs
    ]
    for c, workdir in zip(configs, workdirs, strict=True):
        prepare_workdir(workdir, c)

    generator, discriminator = models.create_models(
        config, dataset.image_shape, dataset.num_classes
    )
    states = [
        create_train_state(c, generator, discriminator, _init_images(c, dataset, s))
        for c, s in zip(configs, splits, strict=True)
    ]
    runs = [
        _Run(
            c,
            workdir,
            s,
            checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), c.keep_checkpoints),
            checkpointing.Checkpointer(os.path.join(workdir, "best_checkpoint"), 1)
            if c.num_validation
            else None,
        )
        for c, workdir, s in zip(configs, workdirs, splits, strict=True)
    ]
    start_step = _restore(runs, states, config.num_iterations)
    for run in runs:
        run.writer = metrics.MetricsWriter(
            os.path.join(run.workdir, "metrics.jsonl"), start_step, write=sharding.is_primary()
        )
        run.tracker = _EvalTracker(run.writer.rows, run.config.early_stopping_patience)
    summary = dict(
        params={
            "generator": sum(x.size for x in jax.tree.leaves(states[0].generator.params)),
            "discriminator": sum(x.size for x in jax.tree.leaves(states[0].discriminator.params)),
        },
        vectorized_seeds=len(configs) if vectorized else 1,
        mesh_devices=mesh.size,
        **origin,
    )
    programs = _Programs(
        config, configs, dataset, splits, states, generator, discriminator, mesh, vectorized
    )
    del states
    step = _train_loop(programs, runs, config, start_step, wall_start)
    final_evals = programs.evaluate(with_validation=bool(config.num_validation))
    if step == start_step:  # nothing trained now: the run had finished (or has 0 iterations)
        programs.save_samples(runs, step)
    all_results = []
    for i, (run, final_eval) in enumerate(zip(runs, final_evals, strict=True)):
        saved = run.checkpointer.steps()
        if not saved or saved[-1] != step:
            run.checkpointer.save(step, programs.pick(programs.state, i))
        run.checkpointer.close()
        baseline = _supervised_baseline(run, discriminator, dataset, programs, mesh)
        results = _results(run, step, final_eval, baseline, summary, wall_start)
        if sharding.is_primary():
            plots.plot_training_curves(
                run.writer.rows, os.path.join(run.workdir, "plots", "sgan_curves.png")
            )
            plots.plot_supervised_loss(
                run.writer.rows, os.path.join(run.workdir, "plots", "supervised_loss.png")
            )
            metrics.atomic_write_json(os.path.join(run.workdir, "results.json"), results)
            _print_table(results)
        all_results.append(results)
    return all_results


class _Programs:
    """The jitted functions of a run and the device arrays they take: one seed's plain
    programs, or several seeds' vmapped ones (each array then has a leading seed axis)."""

    def __init__(
        self,
        config,
        configs,
        dataset,
        splits,
        states,
        generator,
        discriminator,
        mesh,
        vectorized: bool,
    ):
        self.vectorized = vectorized
        self.config = config

        def place_per_seed(tree):
            return sharding.split_leading_axis(tree, mesh)

        self.place = functools.partial(sharding.replicate, mesh=mesh)
        train_step = steps.make_train_step(
            config,
            generator,
            discriminator,
            sharding.make_shard_batch(mesh) if not vectorized else lambda x: x,
        )
        evaluate = steps.make_evaluate(discriminator, config.image_range, config.eval_batch_size)
        generate = steps.make_generate(generator, config)
        self.evaluate_one = jax.jit(evaluate)  # the baselines'
        shared = self.place({"images": dataset.train_images, "labels": dataset.train_labels})
        self.test_set = self.place((dataset.test_images, dataset.test_labels))
        sample_keys = [stream(jax.random.key(c.seed), "samples") for c in configs]
        if vectorized:
            indices = place_per_seed(
                {
                    "labeled_idx": np.stack([s.labeled for s in splits]),
                    "unlabeled_idx": np.stack([s.unlabeled for s in splits]),
                }
            )
            self.state = place_per_seed(_stack(states))
            data_axes = {"images": None, "labels": None, "labeled_idx": 0, "unlabeled_idx": 0}
            train_step = jax.vmap(train_step, in_axes=(0, data_axes))
            self._evaluate_test = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
            self._evaluate_validation = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, 0)))
            generate = jax.vmap(generate, in_axes=(0, 0, None))
            self.validation_set = place_per_seed(
                (
                    np.stack([dataset.train_images[s.validation] for s in splits]),
                    np.stack([dataset.train_labels[s.validation] for s in splits]),
                )
            )
            self.sample_keys = jnp.stack(sample_keys)
        else:
            split = splits[0]
            indices = self.place({"labeled_idx": split.labeled, "unlabeled_idx": split.unlabeled})
            self.state = self.place(states[0])
            self._evaluate_test = self._evaluate_validation = self.evaluate_one
            self.validation_set = self.place(
                (dataset.train_images[split.validation], dataset.train_labels[split.validation])
            )
            self.sample_keys = sample_keys[0]
        self.data = {**shared, **indices}
        self._step_once = jax.jit(train_step, donate_argnums=0)
        self._step_many = jax.jit(
            steps.make_train_steps(train_step), donate_argnums=0, static_argnums=2
        )
        self._generate = jax.jit(generate, static_argnums=2)

    def train(self, count: int) -> None:
        """Advances the state by `count` iterations in one dispatch."""
        if count == 1:
            self.state = self._step_once(self.state, self.data)
        else:
            self.state = self._step_many(self.state, self.data, count)

    def pick(self, tree, i: int):
        """Seed i's part of a (possibly seed-batched) pytree."""
        return jax.tree.map(lambda x: x[i], tree) if self.vectorized else tree

    def evaluate(self, with_validation: bool) -> list[dict]:
        """Per seed: test (and validation) accuracy of the evaluated weights."""
        params = self.state.eval_params()
        test = np.atleast_1d(sharding.to_host(self._evaluate_test(params, *self.test_set)))
        results = [{"test_accuracy": float(a)} for a in test]
        if with_validation:
            validation = self._evaluate_validation(params, *self.validation_set)
            for result, accuracy in zip(
                results, np.atleast_1d(sharding.to_host(validation)), strict=True
            ):
                result["validation_accuracy"] = float(accuracy)
        return results

    def save_samples(self, runs, step: int) -> None:
        images = sharding.to_host(self._generate(self.state.generator.params, self.sample_keys, 16))
        if not sharding.is_primary():
            return
        for i, run in enumerate(runs):
            plots.save_sample_grid(
                self.pick(images, i),
                os.path.join(run.workdir, "samples", f"step_{step:07d}.png"),
            )


def _train_loop(
    programs: _Programs, runs: list[_Run], config, start_step: int, wall_start: float
) -> int:
    """Trains until num_iterations (or early stopping); returns the last step."""
    steps_per_dispatch = config.steps_per_dispatch or (1 if jax.default_backend() == "cpu" else 100)
    step = start_step
    train_seconds, steps_timed = 0.0, 0
    mark, last_boundary = time.time(), step
    while step < config.num_iterations and not any(r.tracker.should_stop for r in runs):
        count = min(steps_per_dispatch, _steps_to_next_boundary(step, config))
        programs.train(count)
        step += count
        final = step == config.num_iterations
        is_log = _is_boundary(step, config.log_every) or final
        is_eval = _is_boundary(step, config.eval_every) or final
        is_sample = _is_boundary(step, config.sample_every) or final
        is_checkpoint = _is_boundary(step, config.checkpoint_every) or final
        if not (is_log or is_eval or is_sample or is_checkpoint):
            continue
        state = programs.state
        host = sharding.to_host(
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
        rate = steps_timed / train_seconds if train_seconds else float("nan")
        for i, run in enumerate(runs):
            _check_finite(programs.pick(host, i), run)
        evals = programs.evaluate(bool(config.num_validation)) if is_eval else [{}] * len(runs)
        for i, run in enumerate(runs):
            seed_host = programs.pick(host, i)
            row = {"step": step}
            if is_log:
                means = seed_host["metric_sums"] / max(int(seed_host["metric_count"]), 1)
                row.update({n: float(v) for n, v in zip(METRIC_NAMES, means, strict=True)})
            row.update(evals[i])
            if is_eval and run.best_checkpointer is not None and run.tracker.update(row):
                run.best_checkpointer.save(step, programs.pick(state, i))
            if is_log:
                row["it_per_s"] = rate
                row["elapsed_seconds"] = time.time() - wall_start
                if sharding.is_primary():
                    prefix = f"seed {run.config.seed}: " if programs.vectorized else ""
                    _log_progress(row, run.config, rate, prefix)
            if len(row) > 1:  # a sample- or checkpoint-only step logs nothing
                run.writer.write(row)
        if is_log:
            train_seconds, steps_timed = 0.0, 0
        if is_sample:
            programs.save_samples(runs, step)
        if is_checkpoint or any(r.tracker.should_stop for r in runs):
            for i, run in enumerate(runs):
                run.checkpointer.save(step, programs.pick(state, i))
        mark, last_boundary = time.time(), step
    return step


def _check_finite(host: dict, run: _Run) -> None:
    if host["nonfinite_step"] >= 0:
        saved = run.checkpointer.steps()
        raise NonFiniteError(
            int(host["nonfinite_step"]) + 1,
            METRIC_NAMES[int(host["nonfinite_metric"])],
            float(host["nonfinite_value"]),
            saved[-1] if saved else None,
        )


def _results(
    run: _Run, step: int, final_eval: dict, baseline: dict, summary: dict, wall_start: float
) -> dict:
    results = dict(
        dataset=run.config.dataset,
        num_labeled=run.config.num_labeled,
        label_selection=run.config.label_selection,
        seed=run.config.seed,
        data_seed=run.config.data_seed,
        num_iterations=run.config.num_iterations,
        final_step=step,
        stopped_early=step < run.config.num_iterations,
        test_accuracy=final_eval["test_accuracy"],
        supervised_test_accuracy=baseline.get("test_accuracy"),
        wall_seconds=time.time() - wall_start,
        **summary,
    )
    if run.config.num_validation:
        best = run.tracker.best or {}
        results.update(
            validation_accuracy=final_eval["validation_accuracy"],
            best_validation_accuracy=best.get("validation_accuracy"),
            best_validation_step=best.get("step"),
            selected_test_accuracy=best.get("test_accuracy"),
            supervised_validation_accuracy=baseline.get("validation_accuracy"),
        )
    return results


def _restore(runs: list[_Run], states: list, num_iterations: int) -> int:
    """Restores every run's newest readable checkpoint in place; returns the common step."""
    restored = [run.checkpointer.restore_latest(s) for run, s in zip(runs, states, strict=True)]
    found_steps = {step for _, step in restored}
    if len(found_steps) > 1:
        # Seeds trained together were checkpointed together; use a step they all have.
        common = set.intersection(*(set(run.checkpointer.steps()) for run in runs))
        if not common:
            raise ConfigError("workdir", "the seeds' checkpoints have no step in common")
        step = max(common)
        restored = [
            (run.checkpointer.restore(step, s), step) for run, s in zip(runs, states, strict=True)
        ]
    start_step = restored[0][1]
    if restored[0][0] is None:
        return 0
    if start_step > num_iterations:
        raise ConfigError(
            "num_iterations", f"{num_iterations} is below the checkpointed step {start_step}"
        )
    for i, (state, _) in enumerate(restored):
        states[i] = state
    logging.info("Resumed from the checkpoint at step %d.", start_step)
    print(f"Resumed from step {start_step}", flush=True)
    return start_step


def _log_progress(row: dict, config, rate: float, prefix: str = "") -> None:
    eta = (config.num_iterations - row["step"]) / rate if rate > 0 else 0.0
    evals = "".join(
        f"  {key.split('_')[0]} {100 * row[key]:.2f}%"
        for key in ("test_accuracy", "validation_accuracy")
        if key in row
    )
    logging.info(
        "%sstep %d/%d  d_sup %.4f  d_unsup %.4f  g %.4f  train_acc %.1f%%%s  %.2f it/s  ETA %s",
        prefix,
        row["step"],
        config.num_iterations,
        row["d_loss_supervised"],
        row["d_loss_unsupervised"],
        row["g_loss"],
        100 * row["train_accuracy"],
        evals,
        rate,
        _format_duration(eta),
    )


def _supervised_baseline(run: _Run, discriminator, dataset, programs: _Programs, mesh) -> dict:
    """The baseline's result, trained once per workdir (supervised.json keeps it)."""
    if not run.config.supervised_epochs:
        return {}
    path = os.path.join(run.workdir, "supervised.json")
    sharding.sync("sgan_jax:baseline")  # every process looks for supervised.json at once
    if os.path.exists(path):
        return metrics.read_json(path)
    result = supervised.train_supervised(
        run.config,
        discriminator,
        dataset,
        run.split,
        programs.evaluate_one,
        programs.place,
        sharding.make_shard_batch(mesh),
    )
    if sharding.is_primary():
        metrics.atomic_write_json(path, result)
        plots.plot_baseline_history(
            result["history"], os.path.join(run.workdir, "plots", "supervised_baseline.png")
        )
        logging.info("Supervised baseline: test accuracy %.4f", result["test_accuracy"])
    return result


def _print_table(results: dict) -> None:
    rows = [("SGAN", results["test_accuracy"])]
    if results.get("selected_test_accuracy") is not None:
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
        print(f"{name.ljust(width)}  {value}", flush=True)
