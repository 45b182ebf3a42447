"""`python -m services.tracking`: run the tracking service until SIGINT/SIGTERM."""

import gc

from services.tracking.app import SERVICE, setup
from shared.service import run_service

# A batch of a few thousand events allocates hundreds of thousands of short-lived objects.
# With the default thresholds (700, 10, 10) the collector ran many young and several full
# passes per batch, each full pass over every object the imports created. Frozen after
# import, those are skipped; young collections run less often. Cycles are still collected.
GC_THRESHOLDS = (100_000, 20, 100)

if __name__ == "__main__":
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    run_service(SERVICE, setup)
