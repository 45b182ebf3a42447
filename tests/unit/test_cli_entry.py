"""Ctrl-C while `creatorflow` is still loading its commands ends with 130 and no traceback."""

from __future__ import annotations

import sys
import types

import pytest

from shared.tools.cli import entry


class _Interrupted(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        raise KeyboardInterrupt


def test_an_interrupt_while_loading_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "shared.tools.cli.main", _Interrupted("main"))
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 130
