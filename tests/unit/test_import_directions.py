"""The package's dependency directions (docs/architecture.md, "Code layout").

contract <- runtime <- services <- tools: the contract imports nothing of ours, the runtime only
the contract, a service the contract, the runtime and itself. Tools (CLI, demo, embedded
servers, synthetic data) may import anything. A service's own command-line modules (`cli.py`,
`*_cli.py`) are tools that live beside the service they operate.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = (package or _module_name(path)).split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from shared import runtime` names a package too
                yield node.lineno, f"{module}.{alias.name}"


def _ours(module: str) -> bool:
    return module.split(".")[0] in {"shared", "services"}


def _allowed(importer: str, imported: str) -> bool:
    if not _ours(imported) or imported in {"shared", "services"}:
        return True
    if importer.startswith("shared.tools"):
        return True
    if importer.startswith("shared.contract"):
        return imported.startswith("shared.contract")
    if importer.startswith("shared.runtime"):
        return imported.startswith(("shared.contract", "shared.runtime"))
    if importer.startswith("services."):
        service = ".".join(importer.split(".")[:2])
        own = imported == service or imported.startswith(service + ".")
        if own or imported.startswith(("shared.contract", "shared.runtime")):
            return True
        leaf = importer.rsplit(".", 1)[-1]
        return (leaf == "cli" or leaf.endswith("_cli")) and imported.startswith("shared.tools")
    return False  # anything else directly under shared/ has no layer yet


# The services whose domain/ is pure (docs/architecture.md §1): it imports no wire models, no
# database driver, no metrics and not its service's store. One line per service.
PURE_DOMAINS = [
    "tracking",
]
NOT_IN_A_DOMAIN = ("shared.contract.events", "asyncpg", "prometheus_client")


def _pure(importer: str, imported: str) -> bool:
    """Whether a module of a service's domain/ may import `imported`."""
    service = ".".join(importer.split(".")[:2])
    banned = (*NOT_IN_A_DOMAIN, f"{service}.store")
    return not any(imported == name or imported.startswith(name + ".") for name in banned)


def _sources() -> list[Path]:
    return sorted(
        p for top in ("shared", "services") for p in (ROOT / top).rglob("*.py") if p.is_file()
    )


def test_every_module_has_a_layer() -> None:
    loose = [
        str(p.relative_to(ROOT)) for p in (ROOT / "shared").glob("*.py") if p.name != "__init__.py"
    ]
    assert loose == [], "put these in shared/contract, shared/runtime or shared/tools"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    importer = _module_name(path)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if not _allowed(importer, module)
    ]
    assert wrong == []


def _domain_sources() -> list[Path]:
    return sorted(p for s in PURE_DOMAINS for p in (ROOT / "services" / s / "domain").rglob("*.py"))


@pytest.mark.parametrize("path", _domain_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_domain_imports_no_wire_model_driver_metric_or_store(path: Path) -> None:
    importer = _module_name(path)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if not _pure(importer, module)
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("importer", "imported", "pure"),
    [
        ("services.tracking.domain.orders", "shared.contract.money", True),
        ("services.tracking.domain.orders", "services.tracking.domain.deals", True),
        ("services.tracking.domain.orders", "shared.contract.events", False),
        ("services.tracking.domain.orders", "shared.contract.events.tracking", False),
        ("services.tracking.domain.orders", "asyncpg", False),
        ("services.tracking.domain.orders", "prometheus_client", False),
        ("services.tracking.domain.orders", "services.tracking.store.port", False),
    ],
)
def test_the_domain_rule_itself(importer: str, imported: str, pure: bool) -> None:
    assert _pure(importer, imported) is pure


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("shared.contract.events.codec", "shared.runtime.kafka", False),
        ("shared.runtime.service", "shared.tools.infra", False),
        ("shared.runtime.kafka", "shared.contract.events", True),
        ("services.payouts.handlers", "services.tracking.domain", False),
        ("services.payouts.handlers", "shared.tools.cli.console", False),
        ("services.payouts.cli", "shared.tools.cli.console", True),
        ("services.payouts.domain.ledger", "services.payouts.store", True),
        ("shared.tools.demo.flow", "services.matching.app", True),
    ],
)
def test_the_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    assert _allowed(importer, imported) is allowed
