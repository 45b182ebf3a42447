"""`python -m services.tracking`: run the tracking service until SIGINT/SIGTERM."""

import gc

from services.tracking.app import SERVICE, setup
from services.tracking.schema import SCHEMA
from shared.runtime.service import run_service

# A batch of a few thousand events allocates hundreds of thousands of short-lived objects.
# With the default thresholds (700, 10, 10) the collector ran many young and several full
# passes per batch, each full pass over every object the imports created. Frozen after
# import, those are skipped. A young collection starts when the live containers grow by the
# first threshold; at 100,000 that happened mid-batch, about once per 10,000 events, each
# pass walking the batch's live events (40 ms). A batch's objects are freed by reference
# counting when it ends, so at 1,000,000 young passes only run when memory really grows,
# and cycles are still collected then.
GC_THRESHOLDS = (1_000_000, 20, 100)

if __name__ == "__main__":
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    run_service(SERVICE, setup, SCHEMA)
