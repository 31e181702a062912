"""Hostile names, credentials, versions and concurrent removes for Kaggle datasets and folder
copies, against the loopback Kaggle stand-in (no network)."""

import json
import logging
import multiprocessing
import os
from pathlib import Path

import pytest

import dlsets
from dlsets.cli import main
from dlsets.errors import (
    AuthError,
    DeadlineError,
    DlsetsError,
    FormatError,
    OptionError,
    SpaceError,
)
from dlsets.sources import acquire, kaggle, kaggle_auth
from dlsets.store import cache
from dlsets.store.removal import remove_tree
from tests.kaggle_standin import TOKEN
from tests.test_kaggle import creds, flowers_zip, kg  # noqa: F401  (fixtures)

HOSTILE_KAGGLE = ["kaggle:../..", "kaggle:../../versions/1", "kaggle:x/..", "kaggle:./x",
                  "kaggle:../_folders", "kaggle:competitions/..", "kaggle:a/" + "b" * 300,
                  "kaggle:a/b/versions/0", "kaggle:a/b/versions/" + "9" * 400,
                  "kaggle:a/b/versions/-3", "kaggle:a\nb/c", "kaggle:/etc/passwd"]
HOSTILE_NAMES = ["..", ".", "a/../..", "a\x00b", "x" * 300, "/etc", "a\nb", "../_folders"]


@pytest.fixture
def deep_cache(tmp_path, monkeypatch):
    """A cache two folders down, so that an escape lands in tmp_path where it is seen."""
    root = tmp_path / "a" / "b" / "cache"
    (root / "_folders" / "keep-0123").mkdir(parents=True)
    monkeypatch.setenv("DLSETS_CACHE", str(root))
    return root


def _outside(tmp_path: Path, root: Path) -> set[str]:
    return {str(p) for p in tmp_path.rglob("*") if root not in (p, *p.parents)}


@pytest.mark.parametrize("name", HOSTILE_KAGGLE)
def test_hostile_kaggle_names_create_nothing_and_quote_the_name(kg, creds, deep_cache,  # noqa: F811
                                                                 tmp_path, capsys, name):
    kg.add("x/y", {1: flowers_zip(2)})
    before = _outside(tmp_path, deep_cache)
    calls = [lambda: kaggle.fetch(name), lambda: dlsets.load_folder(name),
             lambda: kaggle.verify(name), lambda: kaggle.status(name),
             lambda: kaggle.dataset_dir(name), lambda: acquire.remove(name)]
    for call in calls:
        with pytest.raises(OptionError) as ei:
            call()
        assert str(name[7:])[:20] in str(ei.value) or repr(name)[8:28] in str(ei.value)
    for cmd in (["fetch", name], ["info", name], ["verify", name], ["remove", name],
                ["path", name]):
        assert main(cmd) == 1
        err = capsys.readouterr().err
        assert err.startswith("dlsets: error:") and "Traceback" not in err
    assert _outside(tmp_path, deep_cache) == before
    assert (deep_cache / "_folders" / "keep-0123").is_dir()
    assert kg.calls == []  # refused before anything was asked of Kaggle


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_dataset_names_are_refused_by_cache_and_remove(deep_cache, tmp_path, name):
    before = _outside(tmp_path, deep_cache)
    for call in (lambda: cache.dataset_dir(name), lambda: acquire.remove(name),
                 lambda: cache.files_dir(name), lambda: cache.pins_path(name)):
        with pytest.raises(OptionError) as ei:
            call()
        assert repr(name)[:30] in str(ei.value)
    assert _outside(tmp_path, deep_cache) == before
    assert (deep_cache / "_folders" / "keep-0123").is_dir()


def test_a_registry_entry_leading_out_of_the_cache_is_refused(deep_cache, tmp_path,
                                                              monkeypatch):
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"sneaky": {"kaggle": "../../versions/1"}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    before = _outside(tmp_path, deep_cache)
    with pytest.raises(DlsetsError, match=r"sneaky.*'\.\.'"):
        dlsets.load("sneaky")
    assert _outside(tmp_path, deep_cache) == before


@pytest.mark.parametrize("value", [float("inf"), -3, 2.5, True, 10**400, 0, "x"])
def test_the_servers_current_version_must_be_a_bounded_positive_integer(kg, creds,  # noqa: F811
                                                                        value):
    kg.add("alice/flowers", {1: flowers_zip(2)})
    kg.datasets["alice/flowers"]["current"] = value
    with pytest.raises(FormatError, match="currentVersionNumber"):
        kaggle.fetch("kaggle:alice/flowers")
    assert not (kaggle.dataset_dir("kaggle:alice/flowers") / "files").exists() or not list(
        (kaggle.dataset_dir("kaggle:alice/flowers") / "files").glob("*.zip"))


# --- credentials -----------------------------------------------------------------------------


def _no_request(kg, exc_type, match, env=None):  # noqa: F811
    with pytest.raises(exc_type, match=match) as ei:
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert kg.calls == []
    return str(ei.value)


def test_credentials_from_devices_fifos_and_folders_are_refused_at_once(kg, tmp_path,  # noqa: F811
                                                                      monkeypatch):
    kg.add("alice/flowers", {1: flowers_zip(2)})
    monkeypatch.setenv("KAGGLE_API_TOKEN", "/dev/zero")
    _no_request(kg, AuthError, "device")
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    os.symlink("/dev/zero", conf / "access_token")
    _no_request(kg, AuthError, "access_token is a device")
    (conf / "access_token").unlink()
    os.mkfifo(conf / "access_token")  # nobody writes to it: reading it would wait forever
    _no_request(kg, AuthError, "FIFO")
    (conf / "access_token").unlink()
    (conf / "access_token").mkdir()  # unreadable as a file: said, not skipped
    _no_request(kg, AuthError, "access_token is a folder")
    (conf / "access_token").rmdir()
    (conf / "kaggle.json").mkdir()
    msg = _no_request(kg, AuthError, "kaggle.json is a folder")
    assert "not JSON" not in msg and "not a Kaggle credentials file" not in msg
    (conf / "kaggle.json").rmdir()
    (conf / "kaggle.json").write_bytes(b"{" + b" " * (kaggle_auth.MAX_SECRET_FILE + 10) + b"}")
    _no_request(kg, AuthError, "larger than")


@pytest.mark.parametrize("token,what", [(TOKEN + "\r\nX-Evil: 1", "line break"),
                                        (TOKEN + "é€", "outside ASCII"),
                                        (TOKEN + "\x7f", "control character")])
def test_a_malformed_token_is_said_without_showing_it(kg, monkeypatch, tmp_path, capsys,  # noqa: F811
                                                      token, what):
    kg.add("alice/flowers", {1: flowers_zip(2)})
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    msg = _no_request(kg, AuthError, what)
    assert TOKEN not in msg
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "access_token").write_text(token)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
    assert main(["fetch", "kaggle:alice/flowers/versions/1"]) == 1
    err = capsys.readouterr().err
    assert what in err and TOKEN not in err and "Traceback" not in err
    assert kg.calls == []


def test_plain_http_to_another_host_is_warned_once(caplog):
    c = kaggle_auth.Credentials("KAGGLE_API_TOKEN", token=TOKEN)
    kaggle_auth._warned.clear()
    with caplog.at_level(logging.WARNING, logger="dlsets"):
        for url in ("http://127.0.0.1:1/v1/x", "https://kaggle.example/v1/x",
                    "http://[::1]:8/v1/x", "http://localhost/v1"):
            kaggle_auth.warn_if_plain(url, c)
        assert not caplog.records
        kaggle_auth.warn_if_plain("http://proxy.example:8080/v1/x", c)
        kaggle_auth.warn_if_plain("http://proxy.example:8080/v1/y", c)
    assert len(caplog.records) == 1 and "plain http" in caplog.text
    assert TOKEN not in caplog.text and "proxy.example" in caplog.text


# --- deadline and disk -------------------------------------------------------------------


def test_a_kaggle_download_stops_at_the_deadline_and_keeps_its_part(kg, creds,  # noqa: F811
                                                                    monkeypatch, capsys):
    body = flowers_zip(4)
    kg.add("alice/flowers", {1: body}, trickle=(500, 0.3))  # 3 s in all
    monkeypatch.setenv("DLSETS_MIN_RATE", "0")
    monkeypatch.setenv("DLSETS_DEADLINE", "1")
    with pytest.raises(DeadlineError, match="deadline") as ei:
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert "X-Goog-Signature" not in str(ei.value)
    part = kaggle.dataset_dir("kaggle:alice/flowers") / "files" / "v1.zip.part"
    assert 0 < part.stat().st_size < len(body)
    monkeypatch.delenv("DLSETS_DEADLINE")
    assert main(["fetch", "kaggle:alice/flowers/versions/1", "--deadline", "0.5"]) == 1
    assert "deadline" in capsys.readouterr().err


def test_a_kaggle_download_larger_than_the_free_disk_is_refused_first(kg, creds):  # noqa: F811
    kg.add("alice/flowers", {1: flowers_zip(2)}, extra_length=1 << 43)  # 8 TiB announced
    with pytest.raises(SpaceError, match="not enough disk space") as ei:
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert "X-Goog-Signature" not in str(ei.value)
    part = kaggle.dataset_dir("kaggle:alice/flowers") / "files" / "v1.zip.part"
    assert not part.exists() or part.stat().st_size == 0


# --- verify ------------------------------------------------------------------------------


def test_verify_checks_unpacked_files_and_repairs_them(kg, creds, capsys):  # noqa: F811
    kg.add("alice/flowers", {1: flowers_zip(2)})
    root = kaggle.fetch("kaggle:alice/flowers/versions/1")
    rose = root / "flowers" / "rose" / "rose_0.png"
    good = rose.read_bytes()
    rose.write_bytes(good[:-1] + b"\0")
    (root / "flowers" / "daisy" / "daisy_1.png").unlink()
    (root / "flowers" / "stray.png").write_bytes(good)
    assert kaggle.verify("kaggle:alice/flowers", repair=False)[0].endswith("not repaired")
    assert main(["verify", "kaggle:alice/flowers"]) == 0
    out = capsys.readouterr().out
    for said in ("rose_0.png (content changed)", "daisy_1.png (deleted)", "stray.png (added)",
                 "repaired: unpacked again from the verified archive"):
        assert said in out
    assert rose.read_bytes() == good and (root / "flowers" / "daisy" / "daisy_1.png").is_file()
    assert not (root / "flowers" / "stray.png").exists()
    assert kaggle.verify("kaggle:alice/flowers") == []
    # the archive gone too: downloaded again, then unpacked
    (kaggle.dataset_dir("kaggle:alice/flowers") / "files" / "v1.zip").unlink()
    rose.unlink()
    lines = kaggle.verify("kaggle:alice/flowers")
    assert len(lines) == 1 and "repaired: downloaded again and unpacked" in lines[0]
    assert rose.read_bytes() == good and kaggle.verify("kaggle:alice/flowers") == []


# --- remove waits for every source ---------------------------------------------------------


def _hold_then_write(lock_path: str, write: str, ready, go) -> None:
    from filelock import FileLock

    with FileLock(lock_path):
        ready.set()
        go.wait(10)
        Path(write).parent.mkdir(parents=True, exist_ok=True)
        Path(write).write_text("written while holding the lock")


def _remove_while_held(lock: Path, write: Path, argv: list[str], capsys) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_then_write, args=(str(lock), str(write), ready, go))
    p.start()
    try:
        assert ready.wait(30)
        assert main([*argv, "--no-wait"]) == 1  # refused while held: nothing removed
        assert "in use by another process" in capsys.readouterr().err
        assert lock.parent.exists()
        import threading

        t = threading.Timer(0.3, go.set)  # the holder finishes its work while remove waits
        t.start()
        assert main(argv) == 0
        t.join()
    finally:
        go.set()
        p.join(30)
    # removed after the holder's write, not before it (which would leave that write behind)
    assert not write.exists()


def test_remove_of_a_kaggle_dataset_waits_for_its_locks(kg, creds, capsys):  # noqa: F811
    kg.add("alice/flowers", {1: flowers_zip(2)})
    kaggle.fetch("kaggle:alice/flowers/versions/1")
    d = kaggle.dataset_dir("kaggle:alice/flowers")
    _remove_while_held(d / "extracted" / "v1.lock", d / "extracted" / "v1" / "late.txt",
                       ["remove", "kaggle:alice/flowers"], capsys)
    assert not d.exists()


def test_remove_of_a_folders_copies_waits_for_its_locks(tmp_path, capsys):
    from dlsets.sources.folders import folder_slot
    from tests.imagefolders import class_folder

    src = tmp_path / "imgs"
    class_folder(src, {"a": 3, "b": 3})
    dlsets.load_folder(src, workers=1)
    slot = folder_slot(src)
    variant = next(p for p in slot.iterdir() if p.is_dir())
    _remove_while_held(slot / f"{variant.name}.lock", variant / "late.txt",
                       ["remove", str(src)], capsys)
    assert not slot.exists() and src.is_dir()


def test_a_load_waiting_through_a_remove_builds_its_copy_afresh(tmp_path):
    import threading

    from dlsets.sources.folders import folder_slot
    from tests.imagefolders import class_folder

    src = tmp_path / "imgs"
    class_folder(src, {"a": 3, "b": 3})
    first = dlsets.load_folder(src, workers=1)
    slot = folder_slot(src)
    lock = slot / f"{Path(first.info['prepared_dir']).name}.lock"
    remove_tree(slot, "imgs")
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_then_write, args=(str(lock), str(tmp_path / "w"), ready, go))
    p.start()
    got = {}
    try:
        assert ready.wait(30)
        t = threading.Thread(target=lambda: got.update(ds=dlsets.load_folder(src, workers=1)))
        t.start()  # waits for the holder's lock
        threading.Timer(0.3, go.set).start()
        remove_tree(slot, "imgs")  # waits too; whichever comes second sees the other's state
        t.join(60)
    finally:
        go.set()
        p.join(30)
    assert len(got["ds"].train) + len(got["ds"].test) == 6
