"""The package's dependency directions (docs/architecture.md, "Code layout").

contract <- runtime <- services <- tools: the contract imports nothing of ours, the runtime only
the contract, a service the contract, the runtime and itself. Tools (CLI, demo, embedded
servers, synthetic data) may import anything. A service's own command-line modules (`cli.py`,
`*_cli.py`) are tools that live beside the service they operate.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
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


# What a service's domain/ (pure rules) may not import, per service that has one: no wire
# models (the contract's vocabulary of plain literals is allowed), no database driver, no
# metrics, no store.
DOMAIN_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "matching": (
        "shared.contract.events",
        "asyncpg",
        "prometheus_client",
        "services.matching.store",
    ),
    "payouts": (
        "shared.contract.events",
        "pydantic",
        "asyncpg",
        "prometheus_client",
        "services.payouts.store",
    ),
    "tracking": (
        "shared.contract.events",
        "asyncpg",
        "prometheus_client",
        "services.tracking.store",
    ),
}
DOMAIN_ALLOWED: tuple[str, ...] = ("shared.contract.events.vocabulary",)


def _domain_allows(importer: str, imported: str) -> bool:
    parts = importer.split(".")
    if parts[0] != "services" or len(parts) < 3 or parts[2] != "domain":
        return True
    forbidden = DOMAIN_FORBIDDEN.get(parts[1], ())
    if imported == DOMAIN_ALLOWED[0] or imported.startswith(DOMAIN_ALLOWED[0] + "."):
        return True
    return not any(imported == f or imported.startswith(f + ".") for f in forbidden)


def _wrong_imports(path: Path, allows: Callable[[str, str], bool]) -> list[str]:
    """Each import in `path` that `allows` refuses, as `file:line imports module`."""
    importer = _module_name(path)
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if not allows(importer, module)
    ]


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
    assert _wrong_imports(path, _allowed) == []


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


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for service in DOMAIN_FORBIDDEN
        for p in (ROOT / "services" / service / "domain").rglob("*.py")
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_a_domain_imports_no_wire_model_driver_metric_or_store(path: Path) -> None:
    assert _wrong_imports(path, _domain_allows) == []


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("services.matching.domain.scoring", "shared.contract.events", False),
        ("services.matching.domain.scoring", "shared.contract.events.matching", False),
        ("services.matching.domain.features", "shared.contract.events.vocabulary", True),
        ("services.matching.domain.index", "shared.contract.money", True),
        ("services.matching.domain.index", "asyncpg", False),
        ("services.matching.domain.index", "prometheus_client.Counter", False),
        ("services.matching.domain.learning", "services.matching.store.port", False),
        ("services.matching.translate", "shared.contract.events", True),
        ("services.payouts.domain.accounts", "pydantic.SecretStr", False),
        ("services.payouts.domain.lifecycle", "services.payouts.store.port", False),
        ("services.payouts.domain.ledger", "shared.contract.money", True),
        ("services.tracking.domain.orders", "services.tracking.domain.deals", True),
        ("services.tracking.domain.orders", "shared.contract.events.tracking", False),
        ("services.tracking.domain.orders", "services.tracking.store.port", False),
    ],
)
def test_the_domain_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    assert _domain_allows(importer, imported) is allowed
