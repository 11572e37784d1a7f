"""The product's documentation stands alone: every link in README.md and docs/ reaches a file
of the repository (and, with ``#anchor``, a heading or anchor in it), and no product file
points readers at development notes that are not part of the product."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "simulators" / "README.md"]
#: Development notes kept outside the repository: a user never has them.
NOT_SHIPPED = re.compile(r"DOMAIN\.md|DESIGN\.md|STYLE\.md|\.\./shared")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to '-') and explicit
    ``<a id=...>`` anchors."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_local_link_reaches_its_file_and_anchor(page: Path) -> None:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):            # https:, mailto:, file:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(REPO) if file.is_relative_to(REPO) else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading or anchor #{anchor} in {file.name})")
    assert broken == [], f"{page.relative_to(REPO)}: broken links: {broken}"


def test_product_files_do_not_cite_development_notes() -> None:
    roots = ["README.md", "docs", "config", "gateway", "drivers", "simulators", "systemd",
             "mosquitto", "scripts", "bench"]
    cited: list[str] = []
    for root in roots:
        base = REPO / root
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()
                                                      and "__pycache__" not in p.parts)
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            cited.extend(f"{file.relative_to(REPO)}:{n}" for n, line in
                         enumerate(text.splitlines(), 1) if NOT_SHIPPED.search(line))
    assert cited == []
