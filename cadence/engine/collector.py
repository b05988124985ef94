"""The garbage collector tuned for bulk engine work, shared by the commands and the benchmarks.

The engine allocates in bursts (a step batch's rows) that reference counting frees; the
collector's default thresholds made it scan those live batches over and over (28 full
collections in a 10,000-contact dry-run, 13% of its CPU), and the objects alive after
start-up (modules, the grammar, compiled campaigns) at every full collection.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A young generation of 500,000 rather than 700: a step batch of 5,000 enrollments holds
# more live objects than 50,000, so each young collection walked the whole batch
# (30k-contact dry-run: 34 young collections, 0.55 s -> about 0.05 s); full collections
# are rarer too (1.4 s -> 0.14 s of collector time at 10,000 contacts).
BULK_THRESHOLDS = (500_000, 50, 100)


@contextlib.contextmanager
def bulk_collection() -> Iterator[None]:
    """Freeze what is alive now and collect rarely while the block runs; restore after.

    Measured in-process on the dry-run benchmark at 30,000 contacts: 16.8 s -> 10.1 s CPU
    (docs/performance.md). Cycles are still collected, only less often.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
