"""`python -m services.payouts`: run the payouts service until SIGINT/SIGTERM."""

from services.payouts.app import SERVICE, PayoutsSetup
from services.payouts.schema import SCHEMA
from shared.runtime.service import run_service

run_service(SERVICE, PayoutsSetup(), SCHEMA)
