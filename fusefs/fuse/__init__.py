"""The pyfuse3 adapter and the mount lifecycle: the only place that imports pyfuse3."""
