"""The tutorial's SGAN on MNIST with 100 labels (../shared/seed/sgan_tutorial.zh.txt).

Architecture and hyperparameters are the tutorial's; `sgan_jax/models.py` has the networks.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Data.
    config.dataset = "mnist"
    # Where tfds keeps prepared datasets; None: $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    config.data_dir = config_dict.placeholder(str)
    # Folder with one subfolder of original files per dataset; None: $SGAN_MANUAL_DIR, else
    # tfds downloads as usual.
    config.manual_dir = config_dict.placeholder(str)
    config.num_labeled = 100
    config.label_selection = "first"  # "first" (tutorial) | "balanced" (per class, by data_seed)
    config.num_validation = 0  # labeled images held out of training, for model selection
    config.data_seed = 0  # which images are labeled (balanced) and held out
    # Evaluate on the test split's first N images, for quick checks (the test suite); 0: all of
    # them, as every published number here is.
    config.test_examples = 0
    config.labeled_sampling = "random"  # "random": uniform with replacement | "epoch": tiled passes
    config.unlabeled_sampling = "random"

    # Model.
    config.model = "tutorial"  # "tutorial" | "improved"
    config.image_range = "symmetric"  # pixels in [-1, 1] and a tanh generator | "unit": [0, 1]
    config.z_dim = 100
    config.z_distribution = "normal"  # "normal": N(0, 1) | "uniform": U[0, 1)
    config.d_dropout = 0.4
    config.d_input_dropout = 0.0
    config.d_input_noise = 0.0
    config.d_hidden_noise = 0.0
    config.weight_norm = False
    config.generator_data_init = False  # data-dependent init of G's weight-normalised output
    config.init_batch_size = 0  # images for data-dependent init (weight norm); 0: batch_size
    config.conv_impl = "auto"  # "auto" | "matmul" (fast on CPU) | "xla" (lax convolutions)

    # Training.
    config.seed = 0  # initialisation, noise, batch sampling
    config.batch_size = 32
    config.num_iterations = 20_000
    config.learning_rate = 2e-4
    config.generator_learning_rate = config_dict.placeholder(float)  # None: learning_rate
    # Fraction of num_iterations after which both learning rates fall linearly to 0 at the last
    # iteration (the Improved-GAN code's schedule); 1.0 keeps them constant.
    config.lr_decay_start = 1.0
    config.adam_b1 = 0.5
    config.adam_b2 = 0.999
    config.adam_eps = 1e-7  # Keras' default; added to sqrt(v)
    config.adam_eps_root = 0.0  # added to v inside the sqrt
    config.unlabeled_weight = 1.0
    config.generator_loss = "non_saturating"  # | "feature_matching"
    config.ema_decay = 0.0  # evaluate an EMA of D's weights when > 0
    config.supervised_epochs = 30  # the baseline on the labeled images alone; 0 skips it
    config.supervised_ema_decay = 0.0  # evaluate an EMA of the baseline's weights when > 0

    # Loop. Every "_every" is in iterations; 0 means only at the end.
    config.log_every = 100
    config.eval_every = 2000
    config.sample_every = 2000
    config.checkpoint_every = 2000
    config.keep_checkpoints = 3
    config.eval_batch_size = 1000
    config.tensorboard = True  # TensorBoard event files in the workdir, beside metrics.jsonl
    config.early_stopping_patience = 0  # evals without a better validation accuracy; 0: off
    config.steps_per_dispatch = 0  # iterations per jitted call; 0: 1 on CPU, 100 elsewhere
    # Local devices to run on (N > 1: the batch split over N). 0: automatic, one device per run
    # (several seeds spread over the devices that divide them; all devices of all processes
    # with --distributed).
    config.num_devices = 0
    # Precision of float32 matrix products on accelerators (jax_default_matmul_precision):
    # "default" lets GPUs use TF32 and TPUs bfloat16 passes; "highest" is full float32.
    config.matmul_precision = "default"
    # GPU: XLA's deterministic ops (--xla_gpu_deterministic_ops), set before jax starts, so
    # reruns on the same GPU are bit-identical, at some speed. No effect on CPU, which is.
    config.deterministic = False

    return config
