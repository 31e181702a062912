"""Stage-neutral helpers every stage may use: settings, deadlines, progress, JSON parsing,
framework tensors, notebook display, the version."""
