"""`python -m services.payouts`: run the payouts service until SIGINT/SIGTERM."""

from services.payouts.app import SERVICE, PayoutsSetup
from services.payouts.schema import SCHEMA
from shared.runtime.service import run_service

# Redis keeps the rails' webhook event ids (services/payouts/webhooks.py), a fast path only:
# without it the database decides, so payouts starts and stays ready while Redis is down.
run_service(SERVICE, PayoutsSetup(), SCHEMA, uses_redis=True, redis_required=False)
