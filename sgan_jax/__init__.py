"""GAN-based semi-supervised learning in JAX/Flax: one module per method over one harness."""
