"""Label-budget sweeps: many runs, their tables and plots, shards and merging."""
