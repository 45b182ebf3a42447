"""Every service has the same shape (docs/architecture.md, §1 "Layout"), so a reader who knows
one knows all three: the same parts under the same names, a store port whose every operation
both adapters implement, and the same set-up entry point.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("matching", "tracking", "payouts")
PARTS = (
    "domain/__init__.py",
    "translate.py",
    "handlers.py",
    "store/port.py",
    "store/postgres.py",
    "store/memory.py",
    "app.py",
    "settings.py",
    "cli.py",
    "schema.py",
    "migrations",
)


def _operations(protocol: type) -> set[str]:
    """The public methods a protocol (and the protocols it extends) asks for."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names |= {
            name
            for name, value in vars(klass).items()
            if not name.startswith("_") and inspect.isfunction(value)
        }
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_parts(service: str) -> None:
    missing = [part for part in PARTS if not (ROOT / "services" / service / part).exists()]
    assert not missing, f"services/{service} lacks {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_store_adapters_implement_the_whole_port(service: str) -> None:
    name = service.capitalize()
    port = importlib.import_module(f"services.{service}.store.port")
    for adapter in ("memory", "postgres"):
        module = importlib.import_module(f"services.{service}.store.{adapter}")
        for role in ("Transaction", "Store"):
            protocol = getattr(port, f"{name}{role}")
            concrete = getattr(module, f"{adapter.capitalize()}{name}{role}")
            absent = sorted(op for op in _operations(protocol) if not hasattr(concrete, op))
            assert not absent, f"{concrete.__qualname__} lacks {absent} of {protocol.__name__}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_sets_up_the_same_way(service: str) -> None:
    app = importlib.import_module(f"services.{service}.app")
    assert callable(app.make_setup)
    assert all(
        parameter.kind is not parameter.POSITIONAL_ONLY
        for parameter in inspect.signature(app.make_setup).parameters.values()
    )
    assert callable(app.setup), "app.setup is what the service's __main__ runs"
    main = (ROOT / "services" / service / "__main__.py").read_text()
    assert f"from services.{service}.app import" in main
