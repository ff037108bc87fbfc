"""The harness: config, state, the jitted step and loop, EMA, evaluation, the baseline."""
