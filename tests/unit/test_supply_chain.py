"""The image installs exactly what was reviewed: hashed pins, no dev tools, no embedded servers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "deploy" / "requirements.lock").read_text()
BUILD_ONLY = {"setuptools", "wheel"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0]).lower()


def _pins(text: str) -> dict[str, str]:
    return {_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.M)}


def test_every_locked_package_is_pinned_with_hashes() -> None:
    entries = re.split(
        r"\n(?=[A-Za-z0-9])", LOCK.split("\n", 1)[1] if LOCK.startswith("#") else LOCK
    )
    packages = [e for e in entries if re.match(r"[A-Za-z0-9_.\-]+==", e)]
    assert len(packages) == len(_pins(LOCK)) > 20
    for entry in packages:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_lock_and_the_constraints_agree() -> None:
    """`make lock` after changing constraints.txt or pyproject.toml keeps these equal."""
    locked = _pins(LOCK)
    constrained = _pins((ROOT / "constraints.txt").read_text())
    assert set(locked) - BUILD_ONLY <= set(constrained)
    assert {n: v for n, v in locked.items() if n in constrained} == {
        n: constrained[n] for n in locked if n in constrained
    }


def test_the_image_gets_the_runtime_dependencies_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = set(_pins(LOCK))
    assert {_name(r) for r in project["dependencies"]} <= locked
    extras = project["optional-dependencies"]
    for name in ("embedded", "dev"):
        assert not {_name(r) for r in extras[name]} & locked, f"the {name} extra is in the lock"


def test_the_dockerfile_installs_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r deploy/requirements.lock" in dockerfile
    project_install = re.search(r"pip install [^\n]*-e \.", dockerfile)
    assert project_install and "--no-deps" in project_install.group(0)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11", dockerfile, re.M)
