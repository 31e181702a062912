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


def test_readme_examples_run(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from tests.feedfixtures import readme_snippet, tiny_mnist

    tiny_mnist(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(readme_snippet("readme-load"), "README.md", "exec"), scope)
    assert scope["x_train"].shape[1:] == (28, 28) and len(scope["y_test"]) > 0
    scope = {}
    exec(compile(readme_snippet("readme-augment"), "README.md", "exec"), scope)
    n = len(scope["ds"].train)
    assert scope["x"].shape == (2 * n, 28, 28) and np.array_equal(scope["y"][:n],
                                                                    scope["ds"].train.labels)
    with Image.open(tmp_path / "grid.png") as im:
        assert im.width > 8 * 28


def test_every_relative_link_in_the_readme_leads_to_a_file():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:|#)[^)#]+)", readme)
    assert links and all((DOCS.parent / link).exists() for link in links), links
