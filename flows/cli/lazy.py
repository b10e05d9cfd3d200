"""Heavy imports started early, in a thread, while the caller does other work (I/O, waiting)."""

from __future__ import annotations

import importlib
import threading


def import_in_background(*modules: str) -> None:
    """Start importing ``modules`` in a daemon thread. A later `import` of one of them waits for
    this one (the import system's per-module lock) instead of starting again."""

    def load() -> None:
        for module in modules:
            importlib.import_module(module)

    threading.Thread(target=load, name="background-imports", daemon=True).start()
