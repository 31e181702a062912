"""The one check for names that become paths, and the confinement of the paths made from them."""

import os

import pytest

from dlsets.errors import OptionError
from dlsets.store.names import check_component, confined, inside


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\nb", "x" * 201,
                                 "\udcff", 3, None])
def test_bad_components_are_refused_with_the_name_quoted(bad):
    with pytest.raises(OptionError) as ei:
        check_component(bad, "dataset")
    assert repr(bad)[:40] in str(ei.value)


@pytest.mark.parametrize("good", ["mnist", "a.b-c_d", "...x", "é" * 100, "x" * 200])
def test_good_components_pass(good):
    assert check_component(good) == good


def test_confined_refuses_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    assert confined(root, "a", "b") == root / "a" / "b"
    with pytest.raises(OptionError, match="outside"):
        confined(root, "link", "x")
    with pytest.raises(OptionError, match=r"'\.\.'"):
        confined(root, "..", "x")
    assert inside(root, root / "a")
    assert not inside(root, tmp_path)
