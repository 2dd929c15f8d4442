"""`python -m fusefs` is the `mkwritefs` command."""

import sys

from fusefs.cli import main

sys.exit(main())
