"""The cache on disk: its layout, name confinement, locks, atomic writes, free space, bounded
reads of regular files, prepared arrays, removal."""
