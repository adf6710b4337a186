"""netshrink benchmark suites (`netshrink bench SUITE`): not part of the library.

The library never imports this package; only the CLI's `bench` command does, inside that
command. Suites: `netshrink_bench/suites/<name>.py`, listed in `netshrink_bench/registry.py`.
"""
