"""Where the tests find the checkout and the real TLC copies."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real TLC copies: ../shared beside the checkout, or TLC_DATA_DIR for a checkout elsewhere.
TLC_DATA = Path(os.environ.get("TLC_DATA_DIR") or REPO_ROOT.parent / "shared" / "data" / "nyc-tlc")
