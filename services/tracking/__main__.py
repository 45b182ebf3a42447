"""`python -m services.tracking`: run the tracking service until SIGINT/SIGTERM."""

import gc

from services.tracking.app import SERVICE, setup
from services.tracking.schema import SCHEMA
from shared.runtime.service import run_service

# A batch's many short-lived objects are freed by reference counting when it ends; with the
# default thresholds the collector also walked them (and every object the imports made)
# several times per batch. Frozen imports and a high first threshold leave it to run when
# memory really grows, which still collects cycles.
GC_THRESHOLDS = (1_000_000, 20, 100)

if __name__ == "__main__":
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    run_service(SERVICE, setup, SCHEMA)
