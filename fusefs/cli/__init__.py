"""The `mkwritefs` command line: one module per family of commands."""
