"""The table of sources: load and fetch reach a source registered by a module of its own."""

import numpy as np
import pytest

import dlsets
from dlsets.data.dataset import Dataset, Split
from dlsets.errors import OptionError, RegistryError
from dlsets.sources import acquire, table


class Throwaway(table.Source):
    """Claims ``throwaway:<n>``; has load and fetch, nothing else."""

    order = 5

    def __init__(self):
        self.calls = []

    def claims(self, name) -> bool:
        return isinstance(name, str) and name.startswith("throwaway:")

    def load(self, name, **options):
        self.calls.append(("load", name, options["dtype"]))
        x = np.zeros((2, 4, 4), np.uint8)
        return Dataset(name, Split(x, np.zeros(2, np.uint8)), Split(x, np.zeros(2, np.uint8)),
                       ("a",))

    def fetch(self, name, **options):
        self.calls.append(("fetch", name, options["cache_dir"]))
        return {"data.bin": options["cache_dir"]}


@pytest.fixture
def throwaway():
    source = table.register(Throwaway())
    try:
        yield source
    finally:
        table.unregister(source)
    assert source not in table.sources()


def test_load_and_fetch_reach_a_registered_source(throwaway, tmp_path):
    ds = dlsets.load("throwaway:7")
    assert ds.name == "throwaway:7" and ds.train.images.shape == (2, 4, 4)
    assert dlsets.fetch("throwaway:7", cache_dir=tmp_path) == {"data.bin": tmp_path}
    assert throwaway.calls == [("load", "throwaway:7", "uint8"), ("fetch", "throwaway:7", tmp_path)]
    # what it lacks goes to the next source that claims the name: the registry's, as before
    assert table.source_for("throwaway:7", "cached") is table.source_for("mnist")
    with pytest.raises(RegistryError, match="unknown dataset 'throwaway:7'"):
        acquire.cached("throwaway:7", cache_dir=tmp_path)


def test_unregistered_source_is_no_longer_asked(tmp_path):
    source = table.register(Throwaway())
    table.unregister(source)
    with pytest.raises(RegistryError, match="unknown dataset"):
        dlsets.load("throwaway:7", cache_dir=tmp_path)
    assert source.calls == []


def test_the_built_in_sources_are_asked_in_a_fixed_order(tmp_path):
    kinds = [type(s).__name__ for s in table.sources()]
    assert kinds == ["H5FileSource", "FolderSource", "KaggleSource", "RegistrySource"]
    (tmp_path / "imgs").mkdir()
    (tmp_path / "x.h5").write_bytes(b"")
    assert type(table.source_for(tmp_path / "x.h5", "load")).__name__ == "H5FileSource"
    assert type(table.source_for(str(tmp_path / "imgs"))).__name__ == "FolderSource"
    assert type(table.source_for("kaggle:owner/data")).__name__ == "KaggleSource"
    assert type(table.source_for("mnist")).__name__ == "RegistrySource"
    # an HDF5 file or a folder cannot be fetched: that is the registry's "unknown dataset"
    assert type(table.source_for(str(tmp_path / "imgs"), "fetch")).__name__ == "RegistrySource"


class Escaping(Throwaway):
    """A source whose place lies outside the cache (what a careless new source might do)."""

    kind = "escaping"

    def place(self, name, *, cache_dir=None):
        return cache_dir.parent / "elsewhere"


def test_every_place_is_checked_to_lie_inside_the_cache(tmp_path):
    cache = tmp_path / "cache"
    source = table.register(Escaping())
    try:
        with pytest.raises(OptionError, match="outside the cache"):
            table.place("throwaway:1", cache)
    finally:
        table.unregister(source)
    (tmp_path / "photos").mkdir()
    for name, kind in ((str(tmp_path / "photos"), "folder"), ("kaggle:alice/flowers", "kaggle"),
                       ("mnist", "registry")):
        assert table.source_for(name, "place").kind == kind
        path = table.place(name, cache)
        assert cache in path.parents, (name, path)
    with pytest.raises(RegistryError, match="unknown dataset"):
        table.place("no-such-set", cache)


def test_an_empty_name_is_no_folder(tmp_path, monkeypatch):
    # Path("") is the current folder: `dlsets info ""` decoded whatever the shell stood in
    monkeypatch.chdir(tmp_path)
    assert table.source_for("", "load").kind == "registry"
    with pytest.raises(RegistryError, match="unknown dataset ''"):
        dlsets.load("", cache_dir=tmp_path / "cache")
