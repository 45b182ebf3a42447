"""Reading what a PDF shows, for the tests of the creators' statements."""

from __future__ import annotations

import contextlib
import re
import zlib


def pdf_text(document: bytes) -> str:
    """The text a PDF's content streams show (`(...) Tj`), each string on a line of its own,
    whether the streams are compressed (FlateDecode) or not."""
    shown = []
    # A stream is exactly its dictionary's /Length bytes: compressed data may end in a byte
    # that looks like part of the line break before `endstream`.
    for match in re.finditer(rb"/Length (\d+)[^>]*>>\s*stream\r?\n", document):
        stream = document[match.end() : match.end() + int(match.group(1))]
        with contextlib.suppress(zlib.error):  # an uncompressed stream
            stream = zlib.decompress(stream)
        for text in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", stream, re.S):
            shown.append(re.sub(rb"\\(.)", rb"\1", text).decode("latin-1"))
    return "\n".join(shown)
