"""Build barcelona.tosc from barcelona.xml: `python integrations/touchosc/build.py [--check]`.

A TouchOSC (2022+) document is zlib-compressed XML. The XML is the source we review and edit; the
.tosc is committed beside it so a musician can open it without running anything. XML comments are
stripped before compressing because they are for the reader here, and nothing guarantees TouchOSC's
loader skips them. `--check` exits 1 when the committed .tosc no longer matches the XML, which is
also what tests/test_integrations.py asserts.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "barcelona.xml"
TARGET = HERE / "barcelona.tosc"
_COMMENT = re.compile(rb"[ \t]*<!--.*?-->[ \t]*\r?\n?", re.DOTALL)


def document(xml: bytes) -> bytes:
    """The XML TouchOSC will read: the source without comments, checked to be well formed."""
    body = _COMMENT.sub(b"", xml)
    root = ET.fromstring(body)  # a malformed edit fails here with a line number, not in TouchOSC
    if root.tag != "lexml":
        raise ValueError(f"{SOURCE.name}: root element is <{root.tag}>, TouchOSC expects <lexml>")
    return body


def build(xml: bytes) -> bytes:
    """The .tosc bytes for an XML source."""
    return zlib.compress(document(xml), 9)


def main(argv: list[str]) -> int:
    built = build(SOURCE.read_bytes())
    if "--check" in argv:
        # Compare the XML inside, not the compressed bytes: zlib builds may differ byte for byte.
        current = zlib.decompress(TARGET.read_bytes()) if TARGET.exists() else b""
        if current != zlib.decompress(built):
            print(f"{TARGET.name} is out of date: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_bytes(built)
    print(f"wrote {TARGET} ({len(built)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
