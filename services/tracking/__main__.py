"""`python -m services.tracking`: run the tracking service until SIGINT/SIGTERM."""

from services.tracking.app import SERVICE, setup
from services.tracking.schema import SCHEMA
from shared.runtime.collector import collect_rarely
from shared.runtime.service import run_service

if __name__ == "__main__":
    collect_rarely()
    run_service(SERVICE, setup, SCHEMA)
