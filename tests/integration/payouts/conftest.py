from tests.integration.isolated import db_pool, infra, topics

__all__ = ["db_pool", "infra", "topics"]
