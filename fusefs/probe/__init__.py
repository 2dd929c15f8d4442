"""Probes of the real kernel (ext4, tmpfs, the backing device of a mount) and the real
workloads run against a mount."""
