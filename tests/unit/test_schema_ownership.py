"""Each service's SQL names its own tables only (docs/architecture.md §7).

A service's pool sees its own schema alone, so a query of another service's table fails at
run time; this finds one before it runs: no service's code or migrations name another
service's schema or any of its tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.tools.schemas import SERVICE_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = [schema.name for schema in SERVICE_SCHEMAS]
CREATED = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.I)


def _tables_of(service: str) -> set[str]:
    schema = next(s for s in SERVICE_SCHEMAS if s.name == service)
    assert schema.migrations_dir is not None
    return {
        name
        for path in schema.migrations_dir.glob("*.sql")
        for name in CREATED.findall(path.read_text())
    }


def _names_of(other: str) -> re.Pattern[str]:
    """Matches `other`'s schema as a qualifier, or any of its tables."""
    tables = "|".join(sorted(_tables_of(other)))
    return re.compile(rf'(?<![\w.])(?:"?{other}"?\.[a-z_"]|(?:{tables})\b)')


def _sources(service: str) -> list[Path]:
    directory = ROOT / "services" / service
    return sorted([*directory.rglob("*.py"), *directory.rglob("*.sql")])


def test_every_service_owns_tables() -> None:
    for service in SERVICES:
        tables = _tables_of(service)
        assert tables and all(t.startswith(f"{service}_") for t in tables), (service, tables)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_names_no_other_services_schema_or_tables(service: str) -> None:
    found = []
    for other in (o for o in SERVICES if o != service):
        pattern = _names_of(other)
        for path in _sources(service):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if pattern.search(line) and not line.lstrip().startswith(("from ", "import ")):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_the_check_finds_a_foreign_table() -> None:
    pattern = _names_of("tracking")
    assert pattern.search("SELECT * FROM tracking_deals")
    assert pattern.search("SELECT * FROM tracking.outbox")
    assert not pattern.search("SELECT * FROM payouts_deals")
