"""Format readers: small pure functions from bytes or file objects to NumPy arrays."""
