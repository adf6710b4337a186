"""`python -m netshrink.cli`: the same as the `netshrink` command."""
import sys

from netshrink.cli import main

sys.exit(main())
