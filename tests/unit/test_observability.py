"""Libraries' log records: one line for warnings, even with an exception attached."""

from __future__ import annotations

import logging
import sys

from shared.runtime.observability import LibraryFormatter


def _record(level: int) -> logging.LogRecord:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "asyncpg.pool", level, __file__, 1, "Failed to restore the pool", None, exc_info
    )


def test_a_warning_with_an_exception_is_one_line_naming_the_error() -> None:
    line = LibraryFormatter("tracking").format(_record(logging.WARNING))
    assert "\n" not in line
    assert "[warning  ] Failed to restore the pool" in line
    assert "logger=asyncpg.pool service=tracking" in line
    assert "error='ConnectionRefusedError: [Errno 111] Connect call failed" in line


def test_an_error_keeps_its_traceback() -> None:
    text = LibraryFormatter("payouts").format(_record(logging.ERROR))
    first, *rest = text.splitlines()
    assert "[error    ] Failed to restore the pool" in first
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1].startswith("ConnectionRefusedError")
