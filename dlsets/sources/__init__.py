"""Where datasets come from: the registry of built-in and user entries, downloads, Kaggle, image
folders and dlsets HDF5 files, each turned into a ``Dataset``."""
