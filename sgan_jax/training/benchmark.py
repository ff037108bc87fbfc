"""Times the real training step of a recipe on random data of the dataset's shape."""

import time

import jax
import numpy as np

from sgan_jax.data import input_pipeline
from sgan_jax.nets import models
from sgan_jax.runs import sharding
from sgan_jax.training import config as config_lib
from sgan_jax.training import programs
from sgan_jax.training.state import create_train_state

# The shapes tfds reports for the datasets we know, so the benchmark needs no download.
DATASET_SHAPES = {
    "mnist": ((28, 28, 1), 10, 60000),
    "fashion_mnist": ((28, 28, 1), 10, 60000),
    "cifar10": ((32, 32, 3), 10, 50000),
    "svhn_cropped": ((32, 32, 3), 10, 73257),
}


def _programs(config, mesh) -> programs.Programs:
    """The programs train.py runs (a seed axis of size 1), on random data of the dataset's shape."""
    image_shape, num_classes, num_train = DATASET_SHAPES.get(
        config.dataset, DATASET_SHAPES["mnist"]
    )
    input_pipeline.check_split(config, num_train, num_classes)
    config_lib.check_devices(config, mesh.size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_train, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_train).astype(np.int32)
    split = input_pipeline.select_labels(
        labels, config.num_labeled, "first", num_classes, config.data_seed
    )
    dataset = input_pipeline.Dataset(
        config.dataset, images, labels, images[:1], labels[:1], num_classes
    )
    generator, discriminator = models.create_models(config, image_shape, num_classes)
    init_images = input_pipeline.scale_images(
        images[: config.init_batch_size or config.batch_size], config.image_range
    )
    state = create_train_state(config, generator, discriminator, init_images, split.pool_sizes)
    return programs.Programs(
        config, [config], dataset, [split], [state], generator, discriminator, mesh
    )


def step_flops(config, mesh) -> float:
    """FLOPs of one training iteration, as XLA's cost analysis counts them for the reference
    step (conv_impl=xla: lax convolutions, the same maths as the matmul layers)."""
    reference = config.copy_and_resolve_references()
    with reference.unlocked():
        reference.conv_impl = "xla"
    return float(_programs(reference, mesh).step_cost()["flops"])


def matmul_peak_gflops(sizes=(1024, 2048), repeats: int = 5) -> float:
    """The best float32 matrix-product rate of `jnp.dot` under jit, in GFLOP/s."""
    best = 0.0
    for n in sizes:
        a = jax.device_put(np.ones((n, n), np.float32))
        dot = jax.jit(jax.numpy.dot)
        dot(a, a).block_until_ready()
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(4):
                out = dot(a, a)
            out.block_until_ready()
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def time_steps(config, iterations: int, warmup: int = 10) -> dict:
    """Iterations per second of `config`'s train step after compilation and warm-up."""
    config_lib.check_config(config)
    mesh = sharding.make_mesh(config.num_devices)
    compiled = _programs(config, mesh)
    per_dispatch = config.steps_per_dispatch or (1 if jax.default_backend() == "cpu" else 100)
    done = 0

    def run(dispatches: int) -> float:
        nonlocal done
        start = time.perf_counter()
        for _ in range(dispatches):
            compiled.train(done, per_dispatch)
            done += per_dispatch
        jax.block_until_ready(compiled.state)
        return time.perf_counter() - start

    compile_seconds = run(1)
    run(max(1, -(-warmup // per_dispatch)))
    dispatches = max(1, -(-iterations // per_dispatch))
    seconds = run(dispatches)
    if int(compiled.state.nonfinite_step[0]) >= 0:
        raise RuntimeError("the benchmarked training went non-finite")
    return dict(
        it_per_s=dispatches * per_dispatch / seconds,
        compile_seconds=compile_seconds,
        iterations=dispatches * per_dispatch,
        steps_per_dispatch=per_dispatch,
        mesh=mesh,
    )


def benchmark(config, iterations: int, warmup: int = 10) -> dict:
    """Iterations per second of `config`'s train step after compilation and warm-up, its FLOPs
    and the fraction of the machine's matmul peak it reaches."""
    timed = time_steps(config, iterations, warmup)
    mesh, it_per_s = timed.pop("mesh"), timed["it_per_s"]
    flops = step_flops(config, mesh)
    peak = matmul_peak_gflops()
    return dict(
        it_per_s=it_per_s,
        batch_size=config.batch_size,
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        compile_seconds=timed["compile_seconds"],
        iterations=timed["iterations"],
        steps_per_dispatch=timed["steps_per_dispatch"],
        method=config.method,
        model=config.model,
        conv_impl=config.conv_impl,
        num_devices=mesh.size,
        gflop_per_step=flops / 1e9,
        achieved_gflops=flops * it_per_s / 1e9,
        peak_gflops=peak,
        fraction_of_peak=flops * it_per_s / 1e9 / peak,
    )
