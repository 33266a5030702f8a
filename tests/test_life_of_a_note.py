"""docs/life-of-a-note.md names a file and a function at every hop: each must still be there, or the
walk describes a program that no longer exists."""

from __future__ import annotations

import re

from support.ensembles import ROOT

DOC = ROOT / "docs" / "life-of-a-note.md"


def test_every_file_and_name_the_walk_cites_exists() -> None:
    text = DOC.read_text()
    files = set(re.findall(r"`((?:agents|conductor|protocol)/[\w/]+\.py)`", text))
    assert len(files) >= 12, sorted(files)
    missing = [f for f in sorted(files) if not (ROOT / f).is_file()]
    assert not missing, f"{DOC.name} cites files that are gone: {missing}"
    cited = re.findall(r"`((?:agents|conductor|protocol)/[\w/]+\.py)` \(([^)]*)\)", text)
    assert cited
    gone = []
    for path, names in cited:
        source = (ROOT / path).read_text()
        for name in re.findall(r"`([A-Za-z_][\w.]*)`", names):
            last = name.split(".")[-1]
            # a function or class defined there, a field of a dataclass, or a library call made there
            if not re.search(rf"(?:def|class) {last}\b|^\s+{last}: |\.{last}\(", source, re.MULTILINE):
                gone.append(f"{path}: {name}")
    assert not gone, f"{DOC.name} cites names that are gone: {gone}"
