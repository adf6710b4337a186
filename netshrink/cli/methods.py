"""`netshrink methods`: every registered method with one line."""
from __future__ import annotations

from netshrink.cli.common import console
from netshrink.measure.tables import print_table
from netshrink import all_methods


def methods():
    """List every registered method with one line."""
    print_table("methods", ["name", "what it does"], [[n, c.summary] for n, c in all_methods().items()], console)
