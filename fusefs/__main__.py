"""`python -m fusefs` is the `mkwritefs` command."""

import sys

from fusefs.cli.main import main

sys.exit(main())
