"""The documentation site (mkdocs.yml) lists every page in docs/ and documents every public name.

``mkdocs build --strict`` (in .ci/run) checks the same and more, but needs the docs extra; these checks run with
the tests, so a new page or a new public name is caught where it is added, with the line to add.
"""

from __future__ import annotations

import re
from pathlib import Path

import fakebroker

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    """The pages named in mkdocs.yml's ``nav`` block (``- Title: page.md`` lines)."""
    config = (ROOT / "mkdocs.yml").read_text()
    block = re.search(r"^nav:\n(?P<body>(?:[ \t]+.*\n|\n)*)", config, re.MULTILINE)
    assert block is not None, "mkdocs.yml has no nav"
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", block["body"], re.MULTILINE)


def test_every_docs_page_is_in_the_nav() -> None:
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    listed = nav_pages()
    unlisted = [page for page in pages if page not in listed]
    assert not unlisted, (
        "pages in docs/ missing from mkdocs.yml's nav: " + ", ".join(unlisted)
        + "\nadd one line per page under the section it belongs to, e.g. `      - STOMP: stomp.md` under `Guides`"
    )
    missing = [page for page in listed if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml's nav names pages that docs/ does not have: {', '.join(missing)}"
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"


def test_the_api_reference_documents_every_public_name() -> None:
    documented = re.findall(r"^::: fakebroker\.(\w+)$", (DOCS / "api.md").read_text(), re.MULTILINE)
    undocumented = sorted(set(fakebroker.__all__) - set(documented))
    assert not undocumented, (
        "public names (fakebroker.__all__) missing from docs/api.md: " + ", ".join(undocumented)
        + "\nadd a `::: fakebroker.NAME` line for each, under the section it belongs to"
    )
    stale = sorted(set(documented) - set(fakebroker.__all__))
    assert not stale, f"docs/api.md documents names fakebroker.__all__ does not export: {', '.join(stale)}"
    assert len(documented) == len(set(documented)), "docs/api.md documents a name twice"


def test_the_pages_stand_alone() -> None:
    # The site is published: a page may point at the project's own files, never at notes outside the repository.
    outside = re.compile(r"/work/|\.\./shared|\b(?:DESIGN|RABBITMQ-SEMANTICS|PROTOCOL-NOTES)\.md\b")
    found = [f"docs/{page.relative_to(DOCS)}:{n}: {line.strip()}"
             for page in sorted(DOCS.rglob("*.md"))
             for n, line in enumerate(page.read_text().splitlines(), 1) if outside.search(line)]
    assert not found, "pages refer to notes outside the repository:\n" + "\n".join(found)
