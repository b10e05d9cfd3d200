"""Where the tests find the checkout and the real TLC copies."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TLC_DATA = REPO_ROOT.parent / "shared" / "data" / "nyc-tlc"
