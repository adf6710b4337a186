import pytest

from netshrink.cli import common


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Rich wraps at the terminal's width (80 columns when not a terminal), so a message
    holding a long temp path would break over lines and a test grepping it would pass or
    fail with the path's length. The CLI tests read unwrapped output."""
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.setattr(common.console, "width", 1000)
    monkeypatch.setattr(common.err_console, "width", 1000)
