"""The Node suite in tests/node (mqtt.js clients, the control plane over HTTP) passes against ``fakebroker serve``
run as its sidecar. Its packages come from the npm registry (``npm install`` in tests/node, as .ci/run does); the
test is skipped without them, except in CI, where it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kit.needs import need

NODE_SUITE = Path(__file__).resolve().parents[1] / "node"


def test_the_node_suite_passes_against_the_sidecar() -> None:
    node = shutil.which("node")
    need(None if node is not None and (NODE_SUITE / "node_modules" / "mqtt").is_dir()
         else "needs Node.js and mqtt.js: `npm install --no-package-lock` in tests/node")
    scripts = str(Path(sys.executable).parent)  # where this environment's `fakebroker` script is
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    out = subprocess.run([node, "--test"], cwd=NODE_SUITE, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass 5" in out.stdout
