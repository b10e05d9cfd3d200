"""The README and docs/ hold what a user meets: every make verb, every setting, links that lead
somewhere, and a layout page that matches the tree."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
PAGES = (README, *sorted(DOCS.glob("*.md")))
TEXT = "\n".join(page.read_text() for page in PAGES)
# A first read: what the platform is, services, quick start, daily verbs, links.
README_MAX_LINES = 200


def make_verbs() -> list[str]:
    """The Makefile's documented targets (those `make help` lists)."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    return re.findall(r"^([a-z][a-z0-9-]*):[^=\n]*##", makefile, re.MULTILINE)


def settings() -> list[str]:
    """Every setting .env.example names."""
    example = (REPO_ROOT / ".env.example").read_text()
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE)


def tracked_folders() -> set[str]:
    """Top-level folders and the folders one level below, as git tracks them."""
    files = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    folders = set()
    for name in files:
        parts = name.split("/")[:-1]
        if parts and parts[0] in ("services", "flows", "infra", "tests"):
            folders.add("/".join(parts[:2]))
        elif parts:
            folders.add(parts[0])
    return folders


def test_the_readme_fits_a_first_read():
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text()
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("verb", make_verbs())
def test_every_make_verb_is_documented(verb):
    assert re.search(rf"`make {re.escape(verb)}\b", TEXT), f"make {verb}: in no page of docs/"


@pytest.mark.parametrize("name", settings())
def test_every_setting_is_documented(name):
    assert re.search(rf"\b{name}\b", TEXT), f"{name} (.env.example): in no page of docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_links_lead_to_files_and_headings_that_exist(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.MULTILINE)
            anchors = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in anchors, f"{page.name}: no heading #{anchor} in {linked.name}"


def test_the_layout_page_names_every_folder_and_only_folders_that_exist():
    layout = (DOCS / "layout.md").read_text()
    block = layout.split("```")[1]
    named, parent = set(), ""
    for line in block.splitlines():
        found = re.match(r"^( *)([\w.-]+)/\s", line + " ")
        if not found:
            continue
        if found[1]:
            named.add(f"{parent}/{found[2]}")
        else:
            parent = found[2]
            named.add(parent)
    for folder in named:
        assert (REPO_ROOT / folder).is_dir(), f"docs/layout.md names {folder}/, which is gone"
    missing = tracked_folders() - named
    assert not missing, f"docs/layout.md does not name {sorted(missing)}"
