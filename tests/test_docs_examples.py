"""Every Python example of README.md and of every page in docs/ runs as written; a page added later is covered
without a line here.

How a fenced block is taken (``kit/docs.py``):

- first line ``# test_<name>.py`` (or ``# conftest.py``, ``# pytest.ini``): a file of the page's test suite; the
  page's files are written to one directory and run by pytest in a subprocess (the plugin loads from its entry
  point, as for a user); every test must pass;
- first line ``>>> ...``: a doctest, with ``broker`` (a fresh ``fakebroker.start()``), ``fakebroker`` and
  ``MqttClient`` defined;
- the line before the opening fence is ``<!-- excerpt -->`` (or ``<!-- excerpt: why -->``): part of a larger
  program; it must compile, and is not run;
- any other ``python`` block: a script, run by a fresh interpreter, which must exit with status 0. A script
  that defines ``test_`` functions is refused: they would never run (name the file instead).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kit.docs import TEST_FUNCTION, Block, count_tests, markdown_blocks, run_doctest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SCRIPT_TIMEOUT = 60  # seconds; a script runs in well under one, this only bounds a hung one

BLOCKS = {page: markdown_blocks(page, ROOT) for page in PAGES}


def blocks(kind: str) -> list[Block]:
    return [b for page_blocks in BLOCKS.values() for b in page_blocks if b.kind == kind]


def suites() -> dict[str, dict[str, str]]:
    """Each page's test files, by page."""
    out: dict[str, dict[str, str]] = {}
    for block in blocks("file"):
        assert block.name is not None
        files = out.setdefault(block.source, {})
        assert block.name not in files, f"{block.where}: a second file named {block.name} on the page"
        files[block.name] = block.body
    return out


SUITES = suites()


def test_the_examples_are_found() -> None:
    # The pages known to have examples have them, so a change of the block syntax cannot silently skip them all.
    assert {"README.md", "docs/index.md", "docs/pytest.md"} <= set(SUITES)
    assert {b.source for b in blocks("script")} >= {"README.md", "docs/mqtt.md"}


@pytest.mark.parametrize("page", sorted(SUITES))
def test_page_suite_passes(page: str, pytester: pytest.Pytester) -> None:
    files = SUITES[page]
    for name, body in files.items():
        (pytester.path / name).write_text(body)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    tests = count_tests(files)
    assert outcomes.get("passed", 0) >= tests, f"{page}: {tests} test functions, {outcomes}"
    assert set(outcomes) <= {"passed", "warnings"}, f"{page}: every example must pass, not skip: {outcomes}"


@pytest.mark.parametrize("block", blocks("script"), ids=lambda b: b.where)
def test_script_runs(block: Block, tmp_path: Path) -> None:
    assert not TEST_FUNCTION.search(block.body), (
        f"{block.where}: this block defines test functions, which a script never runs; make it a file of the "
        "page's suite with a first line `# test_<name>.py`")
    script = tmp_path / "example.py"
    script.write_text(block.body)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"


def test_doctests_pass() -> None:
    # One test for all (today there are none on the pages): an empty parametrization would be reported as skipped.
    for block in blocks("doctest"):
        run_doctest(block.body, block.where, block.source, block.line)


def test_excerpts_compile() -> None:
    for block in blocks("excerpt"):
        compile(block.body, block.where, "exec")


def test_each_kind_of_block_is_recognised(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\n# test_a.py\ndef test_a(): pass\n```\n\n"
        "```ini\n# pytest.ini\n[pytest]\n```\n\n"
        "```python\n>>> broker.declare_queue('q')\n'q'\n```\n\n"
        "<!-- excerpt: the rest of the app -->\n```python\napp.run()\n```\n\n"
        "- in a list:\n\n    ```python\n    print('hi')\n    ```\n\n"
        "```sh\npip install fakebroker\n```\n")
    found = markdown_blocks(page, tmp_path)
    assert [(b.kind, b.name, b.line) for b in found] == [
        ("file", "test_a.py", 1), ("file", "pytest.ini", 6), ("doctest", None, 11), ("excerpt", None, 17),
        ("script", None, 23), ("other", None, 27)]
    assert found[0].body == "def test_a(): pass\n" and found[4].body == "print('hi')\n"
    run_doctest(found[2].body, "page.md:11", "page.md", 11)
    with pytest.raises(AssertionError, match="Expected"):
        run_doctest(">>> 1 + 1\n3\n", "page.md", "page.md", 1)
    page.write_text("```python\nprint('never closed')\n")
    with pytest.raises(AssertionError, match="Python fences open"):
        markdown_blocks(page, tmp_path)
