"""Write .env from .env.example, filling each value marked `# generated` with a fresh secret.

An existing .env is never changed; settings that .env.example gained since it was written are
appended (with fresh secrets), so `make up` keeps working after an upgrade without hand edits.
Also the one reader of such files (`read_env`). Standard library only: `make up` runs it with the
host's python3, before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

GENERATED = re.compile(r"^(?P<key>[A-Z0-9_]+)=\s*#\s*generated\b.*$")


def parse_env(text: str) -> dict[str, str]:
    """The KEY=value settings of an env file's text, as docker compose reads them: comments and
    blank lines skipped, a ` #` comment after a value dropped."""
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.split(" #", 1)[0].strip()
    return settings


def read_env(path: Path) -> dict[str, str]:
    """The KEY=value settings of an env file."""
    return parse_env(path.read_text())


def secret_for(key: str) -> str:
    """A random value suited to ``key``: URL-safe, so it fits in connection URLs unescaped."""
    if key.endswith("ACCESS_KEY_ID"):
        return "platform-" + secrets.token_hex(8)  # MinIO wants a user name of >= 3 characters
    if key.endswith("AUTH_STRING"):
        return "admin:" + secrets.token_urlsafe(32)  # Prefect's basic-auth "user:password"
    return secrets.token_urlsafe(32)


def render(example: str, overrides: dict[str, str]) -> str:
    """Return the example text with generated secrets and ``overrides`` filled in."""
    lines = []
    for line in example.splitlines():
        key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else None
        if key in overrides:
            line = f"{key}={overrides[key]}"
        elif match := GENERATED.match(line):
            line = f"{match['key']}={secret_for(match['key'])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def missing_settings(example: str, existing: str) -> str:
    """Lines of the rendered example whose keys ``existing`` lacks ('' when none)."""
    have = set(parse_env(existing))
    rendered = render(example, {}).splitlines()
    return "\n".join(
        line
        for line in rendered
        if "=" in line and not line.startswith("#") and line.split("=", 1)[0] not in have
    )


def main() -> int:
    """Write or extend the env file; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--example", type=Path, default=Path(".env.example"))
    parser.add_argument("--output", type=Path, default=Path(".env"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting in the written file (repeatable)",
    )
    args = parser.parse_args()
    if args.output.exists():
        # It holds every secret of the stack: owner-only, whatever an editor or a copy left.
        if args.output.stat().st_mode & 0o077:
            args.output.chmod(0o600)
            print(f"{args.output}: made owner-only (it holds the stack's secrets)")
        added = missing_settings(args.example.read_text(), args.output.read_text())
        if added:
            with args.output.open("a") as out:
                out.write(f"\n# Added from {args.example} by make_env.py (new settings)\n")
                out.write(added + "\n")
            names = ", ".join(line.split("=", 1)[0] for line in added.splitlines())
            print(f"{args.output}: added new settings {names}; existing values kept")
        return 0
    overrides = dict(item.split("=", 1) for item in args.set)
    # Owner-only from the moment it exists, not after the secrets are in it.
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(render(args.example.read_text(), overrides))
    print(f"wrote {args.output} with fresh secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
