"""pytest-benchmark suites for the dispatch hot paths and `python -m benchmarks.report`."""
