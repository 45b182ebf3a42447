"""`python -m services.tracking`: run the tracking service until SIGINT/SIGTERM."""

from services.tracking.app import SERVICE, setup
from shared.service import run_service

if __name__ == "__main__":
    run_service(SERVICE, setup)
