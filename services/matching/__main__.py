"""`python -m services.matching`: run the matching service until SIGINT/SIGTERM."""

from services.matching.app import SERVICE, setup
from services.matching.schema import SCHEMA
from shared.runtime.service import run_service

if __name__ == "__main__":
    run_service(SERVICE, setup, SCHEMA)
