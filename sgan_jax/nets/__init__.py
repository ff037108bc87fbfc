"""The networks: generators, discriminators, their layers and CPU-fast convolutions."""
