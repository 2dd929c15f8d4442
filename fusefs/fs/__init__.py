"""The filesystem core: names, inodes, file data, space, extended attributes, open
files, writeback, settings, fsck, the control attributes and the store.  It imports
nothing from pyfuse3, the command line or the scenarios."""
