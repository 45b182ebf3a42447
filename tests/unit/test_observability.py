"""Libraries' log records: one line for warnings, even with an exception attached."""

from __future__ import annotations

import logging
import sys

from shared.runtime.observability import LibraryFormatter, RepeatsMuted


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


def _failed_connection(node: int) -> logging.LogRecord:
    return logging.LogRecord(
        "aiokafka.conn",
        logging.ERROR,
        __file__,
        1,
        "Unable connect to node with id %s: %s",
        (node, "[Errno 111] Connect call failed"),
        None,
    )


def test_a_repeated_library_message_is_let_through_once_per_spell() -> None:
    now = [0.0]
    muted = RepeatsMuted(seconds=10.0, clock=lambda: now[0])
    passed = []
    for tick in range(100):  # a broker away: a hundred failed connections a second
        now[0] = tick / 100
        record = _failed_connection(tick % 3)
        if muted.filter(record):
            passed.append(record)
    # Once per node: a failure elsewhere is another message, never hidden behind this one.
    assert [r.getMessage()[:29] for r in passed] == ["Unable connect to node with id"[:29]] * 3
    assert {r.args[0] for r in passed if r.args} == {0, 1, 2}
    other = logging.LogRecord("asyncpg.pool", logging.WARNING, __file__, 1, "x", None, None)
    assert muted.filter(other)  # another message is not muted by this one
    now[0] = 10.5
    again = _failed_connection(1)
    assert muted.filter(again)
    line = LibraryFormatter("payouts").format(again)
    assert "Unable connect to node with id 1" in line and "muted=32" in line
