"""The documentation site's API reference covers every public name."""

import re
from pathlib import Path

import dlsets
from dlsets import errors

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_reference_covers_every_public_name():
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    missing = []
    for name in dlsets.__all__:
        obj = getattr(dlsets, name)
        if getattr(obj, "__module__", None) == errors.__name__:
            assert "dlsets.errors" in documented  # the errors page documents the module
            continue
        if f"{obj.__module__}.{obj.__qualname__}" not in documented:
            missing.append(name)
    assert not missing, f"public names without a reference entry: {missing}"


def test_every_site_page_is_in_the_nav():
    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for pat in ("*.md", "*.ipynb") for p in DOCS.rglob(pat)}
    assert pages and all(p in nav for p in pages), sorted(p for p in pages if p not in nav)
