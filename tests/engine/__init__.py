"""Engine tests. The repository root goes on ``sys.path`` so that ``tests.toy_method`` imports."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
