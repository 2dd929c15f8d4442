"""Scenarios: the step language (re-exported here, so a scenario file starts with
``from fusefs.scenario import *``), the runner that plays a story under each policy on a
real mount, its verdicts, and the text and HTML reports."""

from fusefs.scenario.language import *  # noqa: F403
from fusefs.scenario.language import __all__ as __all__
