"""The model code of every commit of the platform, for adopting versions trained before records
existed (flows/logic/provenance.py `adoptable`): python -m infra.releases.model_code [--check]

A registered version carries the `flows` modules it loads in its `code/` (the three model modules
since 38f32c7, the whole `flows/` package before). A version the stack trained before it kept
records can be adopted only if every file of its `code/` is the project's own code, as one of its
commits had it: this writes the sha256 of every top-level `flows/*.py` at every commit reachable
from HEAD into flows/logic/released_code.json. Run it (and commit the file) whenever the model
code changes; a test holds the file to the code of this checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "flows" / "logic" / "released_code.json"


def git(*args: str, data: bytes | None = None) -> bytes:
    """The output of a git command in the checkout."""
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], input=data, capture_output=True, check=True
    ).stdout


def model_code_blobs() -> dict[str, set[str]]:
    """Every top-level ``flows/*.py`` of every commit: path -> git blob ids."""
    blobs: dict[str, set[str]] = {}
    for commit in git("rev-list", "HEAD").decode().split():
        for line in git("ls-tree", commit, "flows/").decode().splitlines():
            meta, path = line.split("\t", 1)
            kind, blob = meta.split()[1:3]
            if kind == "blob" and path.endswith(".py"):
                blobs.setdefault(path, set()).add(blob)
    return blobs


def sha256_of_blobs(blobs: set[str]) -> dict[str, str]:
    """The sha256 of each git blob's content."""
    order = sorted(blobs)
    output = git("cat-file", "--batch", data="".join(f"{b}\n" for b in order).encode())
    digests, position = {}, 0
    for blob in order:
        header_end = output.index(b"\n", position)
        size = int(output[position:header_end].split()[2])
        content = output[header_end + 1 : header_end + 1 + size]
        digests[blob] = hashlib.sha256(content).hexdigest()
        position = header_end + 1 + size + 1  # the content, then a newline
    return digests


def released_code() -> dict[str, list[str]]:
    """Path under a version's code/ -> the sha256 of each of its versions, sorted."""
    blobs = model_code_blobs()
    digests = sha256_of_blobs(set().union(*blobs.values()))
    return {path: sorted({digests[b] for b in found}) for path, found in sorted(blobs.items())}


def main(argv: list[str] | None = None) -> int:
    """Write the file, or (--check) say whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = json.dumps(released_code(), indent=1, sort_keys=True) + "\n"
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        print("up to date" if current == text else f"{OUTPUT} is stale: run without --check")
        return 0 if current == text else 1
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
