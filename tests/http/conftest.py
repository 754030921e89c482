"""HTTP tests: ``import httptestlib`` works under ``--import-mode=importlib`` because this directory is put on
sys.path here."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
