"""train_and_evaluate: an SGAN run and its supervised baseline, every output in a workdir.

workdir/
  config.json       the config in force (a rerun may change only runtime keys; see workdir.py)
  metrics.jsonl     a row per log / eval step: losses, accuracies, it/s, cumulative time
  samples/          4x4 generator grids, step_XXXXXXX.png
  plots/            loss and accuracy curves, the baseline's history
  checkpoints/      orbax; a rerun resumes from the newest readable one
  best_checkpoint/  the state with the best validation accuracy (when num_validation > 0)
  supervised.json   the baseline's result, once it is done
  results.json      the summary
  .lock             held by the process writing the workdir

The flow: config -> data -> state (restored if checkpointed) -> compiled step -> loop ->
results. Several seeds of one config (`train_and_evaluate_seeds`) share the flow: one run is a
seed axis of size 1.
"""

import contextlib
import dataclasses
import os
import time

import jax
from absl import logging

from sgan_jax import methods
from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs import checkpointing, errors, metrics, plots, provenance, sharding, workdir
from sgan_jax.runs.errors import ConfigError, Preempted
from sgan_jax.training import config as config_lib
from sgan_jax.training import programs, progress, supervised
from sgan_jax.training import state as state_lib

# Keys that may differ between the seeds trained together by train_and_evaluate_seeds.
PER_SEED_KEYS = ("seed", "data_seed")


@dataclasses.dataclass
class _Run:
    """The host-side bookkeeping of one seed."""

    config: object
    workdir: str
    split: input_pipeline.LabelSplit
    checkpointer: checkpointing.Checkpointer
    best_checkpointer: checkpointing.Checkpointer | None
    lock: workdir.Lock | None
    writer: metrics.MetricsWriter | None = None
    events: metrics.EventWriter | None = None
    tracker: progress.EvalTracker | None = None

    def save(self, step: int, state, clock: progress.Clock) -> None:
        self.checkpointer.save(step, state, {"elapsed_seconds": clock.run_seconds()})
        if self.best_checkpointer is not None:
            # Older bests go once a checkpoint is past the newest: a resume from that
            # checkpoint still finds the best it knows of.
            self.best_checkpointer.keep_newest_through(step)


def train_and_evaluate(config, workdir_path: str) -> dict:
    """Trains SGAN (resuming from workdir's checkpoints) and the supervised baseline."""
    return train_and_evaluate_seeds([config], [workdir_path])[0]


def train_and_evaluate_seeds(configs, workdirs) -> list[dict]:
    """train_and_evaluate for each (config, workdir), all seeds trained together by one vmapped
    step. The configs may differ only in `seed` and `data_seed`."""
    reference = {k: v for k, v in workdir.config_dict(configs[0]).items() if k not in PER_SEED_KEYS}
    for config in configs[1:]:
        other = {k: v for k, v in workdir.config_dict(config).items() if k not in PER_SEED_KEYS}
        if other != reference:
            differing = sorted(k for k in reference if reference[k] != other.get(k))
            raise ConfigError("config", f"seeds trained together differ in {differing}")
    if len(configs) > 1 and configs[0].early_stopping_patience:
        raise ConfigError("early_stopping_patience", "cannot stop one of several vmapped seeds")
    provenance.apply_xla_settings(configs[0])
    precision = configs[0].matmul_precision
    checkpoint_dirs = [os.path.join(path, "checkpoints") for path in workdirs]
    with (
        errors.StopRequests() as stop,
        errors.reporting_no_space(
            workdirs[0], lambda: checkpointing.newest_saved_step(checkpoint_dirs)
        ),
        jax.default_matmul_precision(None if precision == "default" else precision),
    ):
        return _train(list(configs), list(workdirs), stop)


def _open_runs(configs, workdirs, splits, held) -> tuple[list[_Run], list[dict]]:
    """Checks every workdir against its saved config and takes its lock (held until `held`
    closes), writing nothing else."""
    runs, changes = [], []
    for c, path, split in zip(configs, workdirs, splits, strict=True):
        workdir.create(path)
        changes.append(workdir.check(path, c, config_lib.comparable))
        lock = workdir.lock(path)
        if lock is not None:
            held.callback(lock.close)
        runs.append(
            _Run(
                c,
                path,
                split,
                checkpointing.Checkpointer(os.path.join(path, "checkpoints"), c.keep_checkpoints),
                checkpointing.Checkpointer(os.path.join(path, "best_checkpoint"), None)
                if c.num_validation
                else None,
                lock,
            )
        )
    return runs, changes


def _resume(runs, states, changes, clock: progress.Clock) -> tuple[list, int]:
    """Restores the newest common checkpoint (raising, with nothing written, if checkpoints
    exist and none restores), then records the config and prunes what the resume replays."""
    states, start_step = checkpointing.restore_seeds([r.checkpointer for r in runs], states)
    config = runs[0].config
    if start_step > config.num_iterations:
        raise ConfigError(
            "num_iterations", f"{config.num_iterations} is below the checkpointed step {start_step}"
        )
    if start_step:
        clock.before = _seconds_before(runs[0], start_step)
        logging.info("Resumed from the checkpoint at step %d.", start_step)
        print(f"Resumed from step {start_step}", flush=True)
    for run, run_changes in zip(runs, changes, strict=True):
        if run.lock is not None:
            run.lock.announce()
        workdir.record(run.workdir, run.config, run_changes, start_step)
        run.checkpointer.prune_after(start_step)
        if run.best_checkpointer is not None:
            run.best_checkpointer.prune_after(start_step)
        run.writer = metrics.MetricsWriter(
            os.path.join(run.workdir, "metrics.jsonl"), start_step, write=sharding.is_primary()
        )
        run.tracker = progress.EvalTracker(run.writer.rows, run.config.early_stopping_patience)
        run.events = metrics.EventWriter(
            run.workdir,
            state_lib.learning_rate_schedules(run.config),
            start_step,
            enabled=sharding.is_primary() and run.config.tensorboard,
        )
    return [
        _close_window(run, s, start_step, clock) for run, s in zip(runs, states, strict=True)
    ], start_step


def _close_window(run: _Run, state, start_step: int, clock: progress.Clock):
    """The restored state, its metric window closed where the resumed schedule would otherwise
    log a step twice or drop one (log_every may change on resume, or a finished run be
    lengthened); the window's row is written here when the new schedule would drop it."""
    names = methods.get(run.config.method).metric_names
    state, row = progress.resumed_window(
        state, run.writer.rows, start_step, run.config.log_every, clock, names
    )
    if row is not None:
        run.writer.write(row)
        run.events.scalars(row)
    return state


def _seconds_before(run: _Run, step: int) -> float:
    """The run's wall time up to its checkpoint at `step`; for checkpoints saved without it,
    the last logged elapsed time."""
    saved = run.checkpointer.metadata(step).get("elapsed_seconds")
    if saved is not None:
        return float(saved)
    rows = metrics.read_rows(os.path.join(run.workdir, "metrics.jsonl"))
    logged = [r["elapsed_seconds"] for r in rows if r["step"] <= step and "elapsed_seconds" in r]
    return float(logged[-1]) if logged else 0.0


def _train(configs, workdirs, stop: errors.StopRequests) -> list[dict]:
    clock = progress.Clock(time.time())
    config = configs[0]
    for c in configs:
        config_lib.check_config(c)
    origin = provenance.provenance(config)  # the code that runs, before anything changes it
    dataset, mesh, splits = _data_and_devices(configs)
    # Before any file is written: a method's data (a density model, say) may be refused.
    method_data = methods.get(config.method).method_data(config, dataset, splits[0])
    with contextlib.ExitStack() as held:
        runs, changes = _open_runs(configs, workdirs, splits, held)
        generator, discriminator = models.create_models(
            config, dataset.image_shape, dataset.num_classes
        )
        states = [
            state_lib.create_train_state(
                c, generator, discriminator, input_pipeline.init_images(c, dataset, s), s.pool_sizes
            )
            for c, s in zip(configs, splits, strict=True)
        ]
        states, start_step = _resume(runs, states, changes, clock)
        for run in runs:
            held.callback(run.events.close)
        compiled = programs.Programs(
            config, configs, dataset, splits, states, generator, discriminator, mesh, method_data
        )
        del states
        stop.during_training = True
        step = _train_loop(compiled, runs, config, start_step, clock, stop)
        stop.during_training = False
        for i, run in enumerate(runs):  # the final (or the preempted) step's checkpoint
            if step not in run.checkpointer.steps():
                run.save(step, compiled.seed_state(i), clock)
            run.checkpointer.close()
        if stop.signal_name is not None:
            raise Preempted(stop.signal_name, step)
        final_evals = compiled.evaluate(with_validation=bool(config.num_validation))
        if step == start_step:  # nothing trained now: the run had finished (or has 0 iterations)
            _save_samples(compiled, runs, step)
        summary = dict(
            params=_counts(compiled.state),
            vectorized_seeds=len(configs),
            mesh_devices=mesh.size,
            method_data=methods.get(config.method).describe_data(method_data),
            **origin,
        )
        # The seeds trained together share this much time; each adds its own baseline's.
        shared = progress.Clock(clock.process_start, clock.before, ended=time.time())
        return [
            _finish(run, step, final_eval, summary, shared, discriminator, dataset, compiled, mesh)
            for run, final_eval in zip(runs, final_evals, strict=True)
        ]


def _data_and_devices(configs):
    """The dataset, the device mesh and each seed's label split; nothing written yet."""
    dataset = input_pipeline.load_for_processes(configs[0], models.SUPPORTED_SHAPES)
    mesh = sharding.make_mesh(configs[0].num_devices, len(configs))
    if len(configs) > 1 and len(configs) % mesh.size:
        raise ConfigError(
            "num_devices", f"{len(configs)} seeds cannot be split over {mesh.size} devices"
        )
    batch_devices = 1 if len(configs) > 1 else mesh.size  # the mesh splits seeds, or a batch
    splits = input_pipeline.select_for_configs(configs, dataset)
    for c in configs:
        config_lib.check_devices(c, batch_devices)
    return dataset, mesh, splits


def _counts(seed_batched_state) -> dict:
    """The two networks' parameter counts (of one seed)."""
    return {
        network: sum(
            x[0].size for x in jax.tree.leaves(getattr(seed_batched_state, network).params)
        )
        for network in ("generator", "discriminator")
    }


def _finish(run, step, final_eval, summary, shared, discriminator, dataset, compiled, mesh):
    """The baseline, then results.json, the plots and the printed table of one seed. Its wall
    time is the time the seeds shared (`shared`, a clock stopped at the end of training) plus its
    own finishing, never another seed's baseline."""
    started = time.time()
    baseline = supervised.baseline_for_run(
        run.config, run.workdir, discriminator, dataset, run.split, compiled.evaluate_one, mesh
    )
    results = workdir.results(
        run.config,
        run.workdir,
        step,
        final_eval,
        baseline,
        run.tracker.best,
        dict(
            summary,
            wall_seconds=shared.run_seconds() + time.time() - started,
            process_wall_seconds=shared.process_seconds() + time.time() - started,
            process_started=shared.process_start,
            finished=time.time(),
        ),
    )
    if sharding.is_primary():
        plots.plot_training_curves(
            run.writer.rows, os.path.join(run.workdir, "plots", "sgan_curves.png")
        )
        plots.plot_supervised_loss(
            run.writer.rows, os.path.join(run.workdir, "plots", "supervised_loss.png")
        )
        metrics.atomic_write_json(os.path.join(run.workdir, "results.json"), results)
        workdir.print_table(results)
    return results


def _train_loop(compiled, runs, config, start_step: int, clock: progress.Clock, stop) -> int:
    """Trains until num_iterations, early stopping or a stop signal; returns the last step."""
    steps_per_dispatch = config.steps_per_dispatch or (1 if jax.default_backend() == "cpu" else 100)
    step = start_step
    timer = progress.RateTimer(step)
    while step < config.num_iterations and not any(r.tracker.should_stop for r in runs):
        count = min(steps_per_dispatch, progress.steps_to_next_boundary(step, config))
        compiled.train(step, count)
        step += count
        _at_step(compiled, runs, config, timer, clock, step)
        if stop.should_stop():  # after the step's logging, so a resumed run logs the same rows
            break
    return step


def _at_step(compiled, runs, config, timer, clock, step: int) -> None:
    """What falls due at `step`: log, eval (and best checkpoint), samples, checkpoint."""
    final = step == config.num_iterations
    is_log = progress.is_boundary(step, config.log_every) or final
    is_eval = progress.is_boundary(step, config.eval_every) or final
    is_sample = progress.is_boundary(step, config.sample_every) or final
    is_checkpoint = progress.is_boundary(step, config.checkpoint_every) or final
    if not (is_log or is_eval or is_sample or is_checkpoint):
        return
    host = compiled.host_counters()
    rate = timer.rate(step)
    method = methods.get(config.method)
    for i, run in enumerate(runs):
        progress.check_finite(programs.pick(host, i), run.checkpointer, method.metric_names)
    evals = compiled.evaluate(bool(config.num_validation)) if is_eval else [{}] * len(runs)
    for i, run in enumerate(runs):
        row = progress.row(
            step, programs.pick(host, i), evals[i], is_log, rate, clock, method.metric_names
        )
        if is_eval and run.best_checkpointer is not None and run.tracker.update(row):
            run.best_checkpointer.save(step, compiled.seed_state(i))
        if is_log and sharding.is_primary():
            prefix = f"seed {run.config.seed}: " if len(runs) > 1 else ""
            progress.log_progress(row, run.config, rate, method.log_line, prefix)
        if len(row) > 1:  # a sample- or checkpoint-only step logs nothing
            run.writer.write(row)
            run.events.scalars(row)
    if is_log:
        timer.restart()
    if is_sample:
        _save_samples(compiled, runs, step)
    if is_checkpoint or any(r.tracker.should_stop for r in runs):
        for i, run in enumerate(runs):
            run.save(step, compiled.seed_state(i), clock)
    timer.mark(step)


def _save_samples(compiled, runs, step: int) -> None:
    images = compiled.samples()
    if not sharding.is_primary():
        return
    for i, run in enumerate(runs):
        plots.save_sample_grid(
            images[i], os.path.join(run.workdir, "samples", f"step_{step:07d}.png")
        )
        run.events.samples(step, images[i])
