import json

import pytest

import dlsets
from dlsets.errors import DlsetsError, RegistryError
from dlsets.sources import registry

SHA = "ab" * 32
GOOD = {
    "my-digits": {
        "like": "mnist",
        "files": {
            "train-images-idx3-ubyte.gz": {
                "sha256": SHA,
                "size": 470579,
                "urls": ["http://host-a/x/train-images-idx3-ubyte.gz", "https://host-b/y"],
            }
        },
    }
}


def write(tmp_path, data, name="reg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_builtins_have_every_fact_the_loaders_and_downloader_need():
    expected = {"mnist", "fashion-mnist", "kmnist", "notmnist-small", "notmnist-large",
                "cifar10", "cifar100"}
    assert expected <= set(registry.names())
    for name in expected:
        spec = registry.get(name)
        assert spec.builtin and spec.like == name
        assert spec.format in {"idx", "notmnist", "cifar10", "cifar100"}
        assert len(spec.classes) in (10, 100)
        assert spec.license and spec.citation and spec.homepage
        for fs in spec.file_sets:
            assert set(fs) <= set(spec.files)
        for f in spec.files.values():
            assert f.urls and all(u.startswith(("http://", "https://")) for u in f.urls)
            assert f.sha256 is None or len(f.sha256) == 64
            assert f.md5 is None or len(f.md5) == 32
            assert f.sha256 or (f.md5 and f.size), f"{name}/{f.name} has nothing to verify"
    assert len(registry.get("cifar100").coarse_classes) == 20
    assert registry.get("cifar10").default_files() == ["cifar-10-binary.tar.gz"]


def test_notmnist_is_known_by_size_and_md5_only():
    f = registry.get("notmnist-small").files["notMNIST_small.tar.gz"]
    assert f.sha256 is None and f.md5 == "c9890a473a9769fda4bdf314aaf500dd" and f.size == 8458043


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(RegistryError, match="unknown dataset 'mnsit'.*mnist"):
        registry.get("mnsit")


def test_user_entry_from_env_inherits_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSETS_REGISTRY", str(write(tmp_path, GOOD)))
    spec = registry.get("my-digits")
    assert spec.like == "mnist" and spec.format == "idx" and not spec.builtin
    assert spec.classes == registry.get("mnist").classes
    f = spec.files["train-images-idx3-ubyte.gz"]
    assert f.sha256 == SHA and f.size == 470579 and len(f.urls) == 2
    assert spec.default_files() == ["train-images-idx3-ubyte.gz"]


def test_env_takes_several_paths(tmp_path, monkeypatch):
    other = {"letters": {**GOOD["my-digits"], "like": "notmnist-small"}}
    paths = [str(write(tmp_path, GOOD, "a.json")), str(write(tmp_path, other, "b.json"))]
    import os

    monkeypatch.setenv("DLSETS_REGISTRY", os.pathsep.join(paths))
    assert {"my-digits", "letters"} <= set(registry.names())
    assert registry.get("letters").format == "notmnist"


def test_register_file_returns_names(tmp_path):
    assert dlsets.register_file(write(tmp_path, GOOD)) == ["my-digits"]
    assert registry.get("my-digits").source.endswith("reg.json")


def test_user_file_changes_are_seen(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("DLSETS_REGISTRY", str(path))
    assert registry.get("my-digits").classes[0] == "0"
    data = json.loads(path.read_text())
    data["my-digits"]["classes"] = list("abcdefghij")
    path.write_text(json.dumps(data, indent=2))
    assert registry.get("my-digits").classes[0] == "a"


def _bad(mutate):
    data = json.loads(json.dumps(GOOD))
    mutate(data["my-digits"])
    return data


def _file(e):
    return e["files"]["train-images-idx3-ubyte.gz"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.update(like="mnist-v9"), r"'like' is 'mnist-v9', not a built-in"),
        (lambda e: e.update(like=["mnist"]), r"'like' is \['mnist'\], not a built-in"),
        (lambda e: e.pop("like"), "missing required key 'like'"),
        (lambda e: e.pop("files"), "missing required key 'files'"),
        (lambda e: e.update(files={}), "non-empty"),
        (lambda e: e.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda e: _file(e).update(sha256="abc"), "sha256 must be 64 hexadecimal characters"),
        (lambda e: _file(e).update(sha256="zz" * 32), "sha256 must be 64 hexadecimal"),
        (lambda e: _file(e).update(md5="ab" * 20), "md5 must be 32 hexadecimal"),
        (lambda e: _file(e).update(sha256="a" * 63 + "\n"), "sha256 must be 64 hexadecimal"),
        (lambda e: _file(e).pop("sha256"), "missing required key 'sha256'"),
        (lambda e: _file(e).update(urls=[]), "'urls' must be a non-empty list"),
        (lambda e: _file(e).pop("urls"), "'urls' must be a non-empty list"),
        (lambda e: _file(e).update(urls=["ftp://x/y"]), "not an http"),
        (lambda e: _file(e).update(size=-1), "'size' must be a non-negative"),
        (lambda e: _file(e).update(mirror="x"), r"unknown keys \['mirror'\]"),
        (lambda e: e["files"].update({"../evil": _file(e)}), "may not contain a path"),
        (lambda e: e.update(classes="0123456789"), "'classes' must be a list"),
        (lambda e: _file(e).update(size=10**30), "dlsets accepts files of at most"),
        (lambda e: e["files"].update({"a\0b.gz": _file(e)}), "control characters"),
        (lambda e: e["files"].update({"a\nb.gz": _file(e)}), "control characters"),
        (lambda e: e["files"].update({".hidden.gz": _file(e)}), "may not start with '.'"),
        (lambda e: e["files"].update({"x" * 151: _file(e)}), "at most 150 bytes"),
        (lambda e: _file(e).update(urls=["http://host/a b"]), "spaces or control"),
        (lambda e: _file(e).update(urls=["http://host/a\0"]), "spaces or control"),
    ],
)
def test_bad_entries_name_file_and_entry(tmp_path, monkeypatch, mutate, message):
    path = write(tmp_path, _bad(mutate))
    with pytest.raises(RegistryError, match=message) as err:
        dlsets.register_file(path)
    assert str(path) in str(err.value) and "'my-digits'" in str(err.value)
    monkeypatch.setenv("DLSETS_REGISTRY", str(path))
    with pytest.raises(RegistryError, match=message):
        registry.get("my-digits")  # its own entries fail; built-ins do not (see below)


def test_user_entry_may_not_replace_a_builtin(tmp_path):
    path = write(tmp_path, {"mnist": GOOD["my-digits"]})
    with pytest.raises(RegistryError, match="name of a built-in dataset"):
        dlsets.register_file(path)
    assert registry.get("mnist").builtin


def test_same_name_in_two_user_files_is_an_error(tmp_path, monkeypatch):
    a, b = write(tmp_path, GOOD, "a.json"), write(tmp_path, GOOD, "b.json")
    dlsets.register_file(a)
    monkeypatch.setenv("DLSETS_REGISTRY", str(b))
    with pytest.raises(RegistryError, match="defined twice"):
        registry.get("my-digits")


def test_unreadable_registry_files(tmp_path):
    with pytest.raises(RegistryError, match="cannot be read"):
        dlsets.register_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        dlsets.register_file(broken)
    assert issubclass(RegistryError, DlsetsError)


def test_import_touches_no_disk(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, dlsets; "
        "assert not os.path.exists(os.environ['DLSETS_CACHE']); "
        "import sys; assert 'albumentations' not in sys.modules and 'requests' not in sys.modules"
    )
    env = {**__import__("os").environ, "DLSETS_CACHE": str(tmp_path / "c")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_optional_md5_and_size_may_be_null_as_in_the_builtin_registry(tmp_path):
    data = json.loads(json.dumps(GOOD))
    _file(data["my-digits"]).update(md5=None, size=None)
    dlsets.register_file(write(tmp_path, data))
    f = registry.get("my-digits").files["train-images-idx3-ubyte.gz"]
    assert f.md5 is None and f.size is None and f.sha256 == SHA


def test_user_entry_listing_alternative_archives_gets_one_set_each(tmp_path, monkeypatch):
    entry = {"sha256": SHA, "urls": ["http://host/x"]}
    data = {
        "both": {"like": "cifar10", "files": {"cifar-10-python.tar.gz": entry,
                                              "cifar-10-binary.tar.gz": entry}},
        "own-names": {"like": "mnist", "files": {"a.gz": entry, "b.gz": entry}},
    }
    monkeypatch.setenv("DLSETS_REGISTRY", str(write(tmp_path, data)))
    both = registry.get("both")
    # the built-in order decides the default: the binary archive, so no pickle is needed
    assert both.file_sets == (("cifar-10-binary.tar.gz",), ("cifar-10-python.tar.gz",))
    assert both.default_files() == ["cifar-10-binary.tar.gz"]
    assert registry.get("own-names").file_sets == (("a.gz", "b.gz"),)


@pytest.mark.parametrize("typo, meant", [
    ("MNIST", "mnist"), ("mnst", "mnist"), ("cifar-10", "cifar10"),
    ("fashion_mnist", "fashion-mnist"),
])
def test_unknown_name_suggests_the_closest(typo, meant):
    with pytest.raises(RegistryError, match=f"Did you mean '{meant}'"):
        registry.get(typo)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(RegistryError) as err:
        registry.get("imagenet-21k")
    assert "Did you mean" not in str(err.value)


def test_hostile_registry_files_fail_with_one_registry_error(tmp_path, monkeypatch, capsys):
    from dlsets.cli import main

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json, unchecked
    long_name = write(tmp_path, {"x" * 101: GOOD["my-digits"]}, "long.json")
    for path, message in ((deep, "nested too deeply"),
                          (long_name, "at most 100 characters")):
        with pytest.raises(RegistryError, match=message):
            dlsets.register_file(path)
        monkeypatch.setenv("DLSETS_REGISTRY", str(path))
        # list still works (built-ins) and says once, in one line, what is wrong with the file
        assert main(["list"]) == 0
        err = capsys.readouterr().err
        assert err.startswith("dlsets: ") and str(path) in err and "Traceback" not in err
        assert main(["info", "my-digits"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("dlsets: error:") and str(path) in err and "Traceback" not in err
        registry._warned.clear()
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(registry.MAX_REGISTRY_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(RegistryError, match="a registry may have at most"):
        dlsets.register_file(big)
    with pytest.raises(RegistryError, match="contains a NUL character"):
        dlsets.register_file(str(tmp_path / "reg\0.json"))


def test_a_broken_user_registry_fails_its_own_entries_only(tmp_path, monkeypatch, caplog):
    import json

    from dlsets.cli import main
    from dlsets.sources import registry

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mine": {"like": "mnist", "files": {
        "train-images-idx3-ubyte.gz": {"sha256": "ab", "urls": ["http://127.0.0.1:9/x"]}}}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(bad))
    assert registry.get("cifar10").name == "cifar10"  # built-ins still work
    assert "cifar10" in registry.names() and "mine" not in registry.names()
    assert "bad.json" in caplog.text and "built-in datasets still work" in caplog.text
    with pytest.raises(RegistryError, match="bad.json"):
        registry.get("mine")
    assert main(["list"]) == 0
