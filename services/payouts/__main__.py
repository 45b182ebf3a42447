"""`python -m services.payouts`: run the payouts service until SIGINT/SIGTERM."""

from services.payouts.app import SERVICE, PayoutsSetup
from services.payouts.schema import SCHEMA
from shared.runtime.service import run_service

# Redis shares the rails' rate limits between replicas; without it payouts go on, slower
# (services/payouts/rate_limit.py).
run_service(SERVICE, PayoutsSetup(), SCHEMA, uses_redis=True, redis_required=False)
