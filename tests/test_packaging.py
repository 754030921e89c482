"""The version is written once (``fakebroker.__version__``): the CLI, the installed metadata and the changelog
agree with it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import fakebroker
from fakebroker.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_option_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"fakebroker {fakebroker.__version__}\n"


def test_installed_metadata_carries_the_same_version() -> None:
    # pyproject.toml reads the version from fakebroker/__init__.py; a stale editable install fails here too
    # (`pip install -e .` again).
    assert importlib.metadata.version("fakebroker") == fakebroker.__version__


def test_the_changelog_has_an_entry_for_this_version() -> None:
    headings = re.findall(r"^## \[?([^\]\s]+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert fakebroker.__version__ in headings, f"CHANGELOG.md has no '## {fakebroker.__version__}' section"
