#!/usr/bin/env bash
# The package as users get it: build the sdist and the wheel (from the sdist), check them, install the wheel into
# a fresh venv outside the checkout, and run the smoke tests against that install: the pytest plugin through its
# entry point, `fakebroker serve`, py.typed (mypy reads the annotations), the version, the examples, and every
# Python example of README.md and docs/.
#
#   bash scripts/wheel_smoke.sh
#
# Builds with the current `python`, which needs the dev extra (build, twine, check-wheel-contents,
# trove-classifiers). The smoke tests run on that Python, then on every other Python version the classifiers
# list that this machine has (python3.X on PATH, or under pyenv); the ones it lacks are named and skipped.
# Needs PyPI (or pip's cache) for the isolated build and the test extra; no broker, no fixed ports.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fakebroker-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
VERSION=$(sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' "$ROOT/fakebroker/__init__.py")
[[ -n $VERSION ]] || { echo "wheel_smoke: no __version__ in fakebroker/__init__.py" >&2; exit 1; }

echo "--- build fakebroker $VERSION: sdist, then the wheel from the sdist"
if ! python -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log"
    exit 1
fi
# Deprecations today are failed builds tomorrow (setuptools dates them): none may appear.
if grep -iE 'deprecat' "$WORK/build.log" || grep -E '[A-Z][A-Za-z]*Warning\b' "$WORK/build.log"; then
    echo "wheel_smoke: the build warns (above); full log:" >&2
    cat "$WORK/build.log" >&2
    exit 1
fi
ls -l "$WORK/dist"

echo "--- twine check, check-wheel-contents, metadata"
twine check --strict "$WORK"/dist/*
check-wheel-contents "$WORK"/dist/*.whl
python "$ROOT/scripts/wheel_smoke/check_dist.py" "$WORK/dist" "$VERSION"

# Every example must be exercised by tests/test_examples.py, which runs below against the install.
for example in "$ROOT"/examples/*.py; do
    if ! grep -q "\"$(basename "$example")\"" "$ROOT/tests/test_examples.py"; then
        echo "wheel_smoke: examples/$(basename "$example") is not run by tests/test_examples.py" >&2
        exit 1
    fi
done

# The smoke suite: our own tests of the install, and the project's example, README and docs-example tests, which
# locate examples/, README.md and docs/ relative to themselves. No conftest.py: the plugin must come from the
# entry point (pytester, which the docs-example test uses, is enabled in pytest.ini instead).
SMOKE=$WORK/smoke
mkdir -p "$SMOKE/tests/kit"
cp "$ROOT/scripts/wheel_smoke/test_installed.py" "$ROOT/tests/test_examples.py" "$ROOT/tests/test_readme.py" \
    "$ROOT/tests/test_docs_examples.py" "$SMOKE/tests/"
cp "$ROOT/tests/kit/__init__.py" "$ROOT/tests/kit/docs.py" "$SMOKE/tests/kit/"
cp -r "$ROOT/examples" "$SMOKE/examples"
cp -r "$ROOT/docs" "$SMOKE/docs"
cp "$ROOT/README.md" "$SMOKE/"
printf '[pytest]\ntimeout = 120\npythonpath = tests\naddopts = -p pytester\n' >"$SMOKE/pytest.ini"
WHEEL=$(echo "$WORK"/dist/*.whl)

smoke() {
    local python=$1 venv
    venv=$WORK/venv-$(basename "$python")
    echo "--- fresh venv ($("$python" --version 2>&1)), pip install the wheel with its test extra, and mypy"
    "$python" -m venv "$venv"
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[test]" mypy >"$venv.pip.log" 2>&1; then
        cat "$venv.pip.log"
        exit 1
    fi
    echo "--- smoke tests against the install, from $SMOKE"
    # cd out of the checkout and drop PYTHONPATH, so nothing but the venv's site-packages provides fakebroker.
    (cd "$SMOKE" && env -u PYTHONPATH FAKEBROKER_CHECKOUT="$ROOT" \
        "$venv/bin/python" -m pytest -p no:cacheprovider -q -ra tests)
}

# A Python of a given version: python3.X on PATH if it runs (a pyenv shim may not), else pyenv's.
find_python() {
    local candidate
    for candidate in "$(command -v "python$1" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
        if [[ -x $candidate ]] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

BASE_PYTHON=$(python -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
BASE_VERSION=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
smoke "$BASE_PYTHON"
tested=("$BASE_VERSION")
skipped=()
for version in $(sed -n 's/^ *"Programming Language :: Python :: \(3\.[0-9]*\)",$/\1/p' "$ROOT/pyproject.toml"); do
    [[ $version == "$BASE_VERSION" ]] && continue
    if python_x=$(find_python "$version"); then
        smoke "$python_x"
        tested+=("$version")
    else
        skipped+=("$version")
    fi
done
echo "wheel_smoke: OK on Python ${tested[*]}${skipped[*]:+ (not on this machine: ${skipped[*]})}"
