"""The project's Markdown links resolve: every relative link names a file or folder of the tree, and
every #anchor a heading of its target (GitHub's slugs), so a renamed section or a moved result folder
fails here instead of in a reader's browser."""
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("plugins/*/*.md")])
LINK = re.compile(r"\]\(([^)\s]*)\)")
FENCE = re.compile(r"^\s*```")


def _prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slugs(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: Counter[str] = Counter()
    out = set()
    for line in _prose(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        out.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return out


def test_slugs_follow_github():
    sample = ROOT / "docs" / "BENCHMARKS.md"
    assert "engines-on-af3-kernels-ligo---set-kernelsaf3" in slugs(sample)
    assert "msa_pwa-msa-pair-weighted-averaging" in slugs(sample)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    broken = []
    for line in _prose(doc):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto: ...
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in slugs(path):
                broken.append(f"{target}: no such heading")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
