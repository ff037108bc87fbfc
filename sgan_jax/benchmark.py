"""Times the real training step of a recipe on random data of the dataset's shape."""

import time

import jax
import numpy as np

from sgan_jax import config_checks, input_pipeline, models, programs, sharding
from sgan_jax.state import create_train_state

# The shapes tfds reports for the datasets we know, so the benchmark needs no download.
DATASET_SHAPES = {
    "mnist": ((28, 28, 1), 10, 60000),
    "fashion_mnist": ((28, 28, 1), 10, 60000),
    "cifar10": ((32, 32, 3), 10, 50000),
    "svhn_cropped": ((32, 32, 3), 10, 73257),
}


def benchmark(config, iterations: int, warmup: int = 10) -> dict:
    """Iterations per second of `config`'s train step after compilation and warm-up."""
    config_checks.check_config(config)
    image_shape, num_classes, num_train = DATASET_SHAPES.get(
        config.dataset, DATASET_SHAPES["mnist"]
    )
    mesh = sharding.make_mesh(config.num_devices)
    config_checks.check_config_against_data(config, num_train, num_classes, mesh.size)
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
    # The programs train.py runs: a seed axis of size 1, the batch split over the mesh.
    compiled = programs.Programs(
        config, [config], dataset, [split], [state], generator, discriminator, mesh
    )
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
    state = compiled.state
    if int(state.nonfinite_step[0]) >= 0:
        raise RuntimeError("the benchmarked training went non-finite")
    return dict(
        it_per_s=dispatches * per_dispatch / seconds,
        batch_size=config.batch_size,
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        compile_seconds=compile_seconds,
        iterations=dispatches * per_dispatch,
        steps_per_dispatch=per_dispatch,
        model=config.model,
        conv_impl=config.conv_impl,
        num_devices=mesh.size,
    )
