from services.payouts.schema import SCHEMA
from tests.integration.isolated import infra, schema_pool, topics

db_pool = schema_pool(SCHEMA)

__all__ = ["db_pool", "infra", "topics"]
