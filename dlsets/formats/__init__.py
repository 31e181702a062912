"""File formats: readers from bytes or file objects to NumPy arrays (IDX, CIFAR, notMNIST,
EMNIST, SVHN, STL-10, npz, images, masks, the restricted unpickler), safe archives, bounded
decompression, the dlsets HDF5 layout, and the limits each format allows."""
