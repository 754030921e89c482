"""Check the built sdist and wheel for what twine and check-wheel-contents do not: the metadata a plugin index
and PyPI read, and the files each artefact must carry.

    python scripts/wheel_smoke/check_dist.py DIST_DIR SOURCE_VERSION
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from trove_classifiers import classifiers as KNOWN_CLASSIFIERS

REQUIRED_CLASSIFIERS = {
    "Framework :: Pytest",  # pytest's plugin list is built from this one
    "Framework :: AnyIO",
    "Typing :: Typed",
    "Topic :: Software Development :: Testing",
}
SDIST_FILES = ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "mkdocs.yml", "fakebroker/py.typed",
               "docs/index.md", "examples", "tests/conftest.py"]


def check(dist: Path, version: str) -> list[str]:
    problems: list[str] = []
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    for artefact in (wheel, sdist):
        if f"-{version}" not in artefact.name:
            problems.append(f"{artefact.name}: not version {version} (fakebroker/__init__.py)")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"fakebroker-{version}.dist-info"
        meta = HeaderParser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    classifiers = set(meta.get_all("Classifier") or [])
    problems += [f"unknown classifier: {c}" for c in sorted(classifiers - KNOWN_CLASSIFIERS)]
    problems += [f"missing classifier: {c}" for c in sorted(REQUIRED_CLASSIFIERS - classifiers)]
    problems += [f"license classifier beside an SPDX expression: {c}" for c in classifiers if c.startswith("License")]
    if meta["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {meta['License-Expression']!r}, not 'MIT'")
    if f"{info}/licenses/LICENSE" not in names:
        problems.append("the wheel does not carry LICENSE")
    urls = {value.split(",", 1)[0] for value in meta.get_all("Project-URL") or []}
    problems += [f"no {name} project URL" for name in ("Documentation", "Changelog", "Issues") if name not in urls]
    if not meta.get("Keywords"):
        problems.append("no keywords")
    if "fakebroker/py.typed" not in names:
        problems.append("the wheel does not carry fakebroker/py.typed")
    if "[pytest11]\nfakebroker = fakebroker.pytest_plugin" not in entry_points:
        problems.append("no pytest11 entry point for fakebroker.pytest_plugin")
    if "[console_scripts]\nfakebroker = fakebroker.cli:main" not in entry_points:
        problems.append("no fakebroker console script")
    stray = sorted({n.split("/", 1)[0] for n in names} - {"fakebroker", info})
    problems += [f"the wheel installs an unexpected top-level {n}" for n in stray]

    with tarfile.open(sdist) as tf:
        root = f"fakebroker-{version}/"
        members = {m.name.removeprefix(root) for m in tf.getmembers()}
    problems += [f"the sdist does not carry {f}" for f in SDIST_FILES if f not in members]
    problems += [f"the sdist carries {m}" for m in sorted(members) if "__pycache__" in m or m.endswith(".pyc")]
    return problems


def main() -> int:
    dist, version = Path(sys.argv[1]), sys.argv[2]
    problems = check(dist, version)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dist: {', '.join(p.name for p in sorted(dist.iterdir()))}: metadata and contents OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
