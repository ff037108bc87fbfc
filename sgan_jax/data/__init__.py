"""Datasets from tfds, the labeled / unlabeled / validation split, batch indices on device."""
