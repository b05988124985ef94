"""Peak memory of one filter run in a fresh process: `python -m benchmarks.memory BACKEND SIZE`.

Prints one JSON object: the table's Arrow size, and how far the process's peak RSS rose above
its RSS just before the filter ran (Linux: VmHWM is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any


def _status() -> dict[str, int]:
    with open("/proc/self/status") as f:
        text = f.read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


def _trim() -> None:
    """Hand freed heap pages back to the OS, so new allocations show up in the peak RSS."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measure(backend: str, size: str, which: str = "compound") -> dict[str, Any]:
    """Filter `size` contacts once with `backend` and report the peak memory it added."""
    from benchmarks import test_bench_filter as bf
    from benchmarks.data import (
        COMPOUND,
        DUCKDB_COMPOUND,
        DUCKDB_FANOUT,
        FANOUT,
        FANOUT_EVENT,
        contacts,
        polars_compound,
        polars_fanout,
    )

    table = contacts(size)
    args = (
        (COMPOUND, None, polars_compound, DUCKDB_COMPOUND)
        if which == "compound"
        else (FANOUT, FANOUT_EVENT, polars_fanout, DUCKDB_FANOUT)
    )
    run = bf._runner(backend, size, *args)
    _trim()
    before = _status()["VmRSS"]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    mask = run()
    peak = _status()["VmHWM"]
    return {
        "backend": backend,
        "size": size,
        "which": which,
        "rows": len(mask),
        "table_bytes": table.nbytes,
        "extra_peak_bytes": max(0, peak - before),
    }


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:])))
