"""What loading returns: the ``Dataset`` of ``Split``s, validation splits, channel statistics, and
fast reads of HDF5-backed splits."""
