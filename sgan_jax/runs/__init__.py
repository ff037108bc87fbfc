"""How a run lives: workdir, lock, checkpoints, metrics, plots, errors, devices, provenance."""
