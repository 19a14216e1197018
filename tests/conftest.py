"""Make tests/instances.py importable however pytest is invoked."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
