"""Expansion past one process: shards of an expansion (HDF5 or WebDataset tar), their index and
verification, reading them back, and Ray."""
