"""`python -m services.payouts`: run the payouts service until SIGINT/SIGTERM."""

from services.payouts.app import SERVICE, setup
from services.payouts.schema import SCHEMA
from shared.runtime.collector import collect_rarely
from shared.runtime.service import run_service

# Redis shares the rails' rate limits between replicas (services/payouts/rate_limit.py) and
# keeps the rails' webhook event ids (services/payouts/webhooks.py). Neither needs it: without
# it, limits are kept locally and the database decides on webhooks, so payouts starts and
# stays ready while Redis is down.
if __name__ == "__main__":
    collect_rarely()
    run_service(SERVICE, setup, SCHEMA, uses_redis=True, redis_required=False)
