"""Files for other tools: HDF5 and npz exports, Caffe HDF5Data, ConvNetJS sprites, TensorBoard."""
