"""Kaggle datasets as a source, against a loopback stand-in for Kaggle's API (no network)."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

import dlsets
from dlsets.cli import main
from dlsets.errors import (
    AuthError,
    ChecksumError,
    DownloadError,
    OfflineError,
    OptionError,
    UnsafeArchiveError,
)
from dlsets.sources import kaggle
from tests.formats import idx_bytes
from tests.imagefolders import pattern
from tests.kaggle_standin import KEY, TOKEN, USER, KaggleStandin

_CRED_ENV = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR",
             "XDG_CONFIG_HOME")


def _png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pattern(24, 24, seed=seed)).save(buf, format="PNG")
    return buf.getvalue()


def flowers_zip(n: int = 6, seed: int = 0) -> bytes:
    """A Kaggle-style zip: a wrapper folder, class folders, a CSV beside them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for cls in ("daisy", "rose", "tulip"):
            for i in range(n):
                z.writestr(f"flowers/{cls}/{cls}_{i}.png", _png(seed + i + 17 * len(cls)))
        z.writestr("flowers.csv", "file,label\n")
    return buf.getvalue()


@pytest.fixture
def kg(tmp_path, monkeypatch):
    """The stand-in, with its URL in DLSETS_KAGGLE_API and no credentials anywhere."""
    for name in _CRED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with KaggleStandin() as standin:
        monkeypatch.setenv("DLSETS_KAGGLE_API", standin.url)
        yield standin


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)


def test_no_credentials_says_where_to_put_them(kg):
    kg.add("alice/flowers", {1: flowers_zip()})
    with pytest.raises(AuthError) as err:
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    msg = str(err.value)
    for where in ("KAGGLE_API_TOKEN", "access_token", "KAGGLE_USERNAME", "kaggle.json",
                  "KAGGLE_CONFIG_DIR", "https://www.kaggle.com/settings"):
        assert where in msg
    assert kg.calls == []  # nothing was sent without credentials


@pytest.mark.parametrize("how", ["token-env", "token-file", "config-dir", "env-over-file"])
def test_every_credential_form_is_used(kg, tmp_path, monkeypatch, how):
    kg.add("alice/flowers", {1: flowers_zip()})
    home = tmp_path / "home"
    if how == "token-env":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
        want = f"Bearer {TOKEN}"
    elif how == "token-file":
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "access_token").write_text(TOKEN + "\n")
        want = f"Bearer {TOKEN}"
    else:
        conf = tmp_path / "conf"
        conf.mkdir()
        wrong = "wrong" if how == "env-over-file" else KEY
        (conf / "kaggle.json").write_text(json.dumps({"username": USER, "key": wrong}))
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(conf))
        if how == "env-over-file":
            monkeypatch.setenv("KAGGLE_USERNAME", USER)
            monkeypatch.setenv("KAGGLE_KEY", KEY)
        want = "Basic "
    folder = kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert (folder / "flowers" / "rose" / "rose_0.png").is_file()
    assert kg.calls[0][2].startswith(want)


def test_wrong_credentials_are_a_401_naming_their_source(kg, monkeypatch):
    kg.add("alice/flowers", {1: flowers_zip()})
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key")
    with pytest.raises(AuthError, match=r"rejected the credentials from KAGGLE_USERNAME and "
                       r"KAGGLE_KEY \(HTTP 401\).*Unauthenticated"):
        kaggle.fetch("kaggle:alice/flowers")


def test_403_gives_the_url_to_accept_terms_or_rules(kg, creds):
    kg.add("bob/medical", {3: flowers_zip()}, consent=True)
    with pytest.raises(AuthError, match=r"HTTP 403.*https://www\.kaggle\.com/datasets/bob/"
                       r"medical and accept the dataset's terms"):
        kaggle.fetch("kaggle:bob/medical")
    kg.add_competition("digit-recognizer", flowers_zip())
    with pytest.raises(AuthError, match=r"https://www\.kaggle\.com/competitions/"
                       r"digit-recognizer/rules and accept the competition's rules"):
        kaggle.fetch("kaggle:competitions/digit-recognizer")
    kg.accept("competitions/digit-recognizer")
    assert kaggle.fetch("kaggle:competitions/digit-recognizer").is_dir()


def test_version_pin_and_current_version(kg, creds, tmp_path):
    kg.add("alice/flowers", {1: flowers_zip(4), 2: flowers_zip(5, seed=100)})
    v1 = kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert kg.methods() == ["DownloadDataset"] and kg.calls[0][1]["datasetVersionNumber"] == 1
    assert len(list(v1.glob("flowers/rose/*.png"))) == 4
    current = kaggle.fetch("kaggle:alice/flowers")
    assert kg.methods()[1:] == ["GetDataset", "DownloadDataset"]
    assert current.name == "v2" and len(list(current.glob("flowers/rose/*.png"))) == 5
    pins = json.loads((kaggle.dataset_dir("kaggle:alice/flowers") / "pins.json").read_text())
    assert set(pins) == {"v1.zip", "v2.zip"} and len(pins["v1.zip"]["sha256"]) == 64
    # a pinned version is served from the cache without asking Kaggle anything
    n = len(kg.calls)
    assert kaggle.fetch("kaggle:alice/flowers/versions/1") == v1 and len(kg.calls) == n
    with pytest.raises(DownloadError, match="no such dataset version 9"):
        kaggle.fetch("kaggle:alice/flowers/versions/9")


def test_a_cut_download_resumes_and_the_pin_is_enforced(kg, creds, monkeypatch):
    body = flowers_zip(8)
    kg.add("alice/flowers", {1: body}, drop_after=len(body) // 3, drop_times=1)
    folder = kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert folder.is_dir()
    ranges = kg.storage.ranges("/storage/alice/flowers/1.zip")
    assert ranges[0] is None and ranges[1] == f"bytes={len(body) // 3}-"
    store = kaggle.dataset_dir("kaggle:alice/flowers")
    # cut on every try: the part is kept, and the next run resumes it from a new signed URL
    (store / "files" / "v1.zip").unlink()
    kg.storage.add("/storage/alice/flowers/1.zip", body, drop_after=100, drop_times=99)
    with pytest.raises(DownloadError, match="transfer interrupted"):
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    have = (store / "files" / "v1.zip.part").stat().st_size
    assert 0 < have < len(body)
    kg.storage.add("/storage/alice/flowers/1.zip", body)
    kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert kg.storage.ranges("/storage/alice/flowers/1.zip")[-1] == f"bytes={have}-"
    assert kg.methods().count("DownloadDataset") == 3  # a freshly signed URL per run
    # upstream bytes changed under the same version: the pinned sha256 refuses them
    (store / "files" / "v1.zip").unlink()
    kg.storage.add("/storage/alice/flowers/1.zip", flowers_zip(8, seed=5))
    with pytest.raises(ChecksumError, match="pinned at the first download"):
        kaggle.fetch("kaggle:alice/flowers/versions/1")
    assert not (store / "files" / "v1.zip").exists()


def test_unsafe_zip_members_are_refused(kg, creds):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ok/a.png", _png(1))
        z.writestr("../../evil.txt", "x")
    kg.add("eve/trap", {1: buf.getvalue()})
    with pytest.raises(UnsafeArchiveError, match="outside the archive"):
        kaggle.fetch("kaggle:eve/trap/versions/1")
    store = kaggle.dataset_dir("kaggle:eve/trap")
    assert not (store / "extracted" / "v1").exists()
    assert not list(store.rglob("evil.txt"))


def test_loaded_as_an_image_folder_and_offline_afterwards(kg, creds, monkeypatch):
    kg.add("alice/flowers", {1: flowers_zip(6)})
    ds = dlsets.load_folder("kaggle:alice/flowers", size=(16, 16))
    assert ds.classes == ("daisy", "rose", "tulip") and ds.name == "kaggle:alice/flowers"
    assert len(ds.train) + len(ds.test) == 18 and ds.info["root"] == "flowers"
    assert ds.info["skip_reasons"] == {}  # flowers.csv sits beside the wrapper folder
    monkeypatch.setenv("DLSETS_OFFLINE", "1")
    n = len(kg.calls)
    again = dlsets.load_kaggle("kaggle:alice/flowers", size=(16, 16))
    assert len(kg.calls) == n and np.array_equal(again.train.images, ds.train.images)
    with pytest.raises(OfflineError):
        dlsets.load_folder("kaggle:alice/other", size=8)


def test_like_a_builtin_layout_and_a_registry_entry(kg, creds, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {"mnist/train-images.idx3-ubyte": rng.integers(0, 256, (30, 28, 28), np.uint8),
              "mnist/train-labels.idx1-ubyte": (np.arange(30) % 10).astype(np.uint8),
              "mnist/t10k-images.idx3-ubyte": rng.integers(0, 256, (10, 28, 28), np.uint8),
              "mnist/t10k-labels.idx1-ubyte": (np.arange(10) % 10).astype(np.uint8)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, a in arrays.items():
            z.writestr(name, idx_bytes(a))
    kg.add("carol/mnist", {2: buf.getvalue()})
    ds = dlsets.load_kaggle("kaggle:carol/mnist", like="mnist")
    assert np.array_equal(ds.train.images, arrays["mnist/train-images.idx3-ubyte"])
    assert np.array_equal(ds.test.labels, arrays["mnist/t10k-labels.idx1-ubyte"])
    with pytest.raises(OptionError, match="apply to image folders"):
        dlsets.load_kaggle("kaggle:carol/mnist", like="mnist", size=(8, 8))
    assert kaggle.verify("kaggle:carol/mnist") == []
    npy = next(kaggle.dataset_dir("kaggle:carol/mnist").glob("prepared/v2-like-mnist/train_im*"))
    npy.write_bytes(npy.read_bytes()[:-1] + bytes([npy.read_bytes()[-1] ^ 1]))
    assert "train_images.npy has sha256" in kaggle.verify("kaggle:carol/mnist")[0]
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({
        "kmnist-from-kaggle": {"kaggle": "carol/mnist/versions/2", "like": "mnist"},
        "my-flowers": {"kaggle": "alice/flowers", "size": [12, 12], "color": "grayscale"}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    (x, y), _ = dlsets.load("kmnist-from-kaggle").as_tuples()
    assert x.shape == (30, 28, 28)
    kg.add("alice/flowers", {1: flowers_zip(4)})
    flowers = dlsets.load("my-flowers")
    assert flowers.train.images.shape[1:] == (12, 12) and flowers.name == "my-flowers"


def test_cli_augments_a_kaggle_dataset_and_lists_entries(kg, creds, tmp_path, capsys,
                                                         monkeypatch):
    kg.add("alice/flowers", {1: flowers_zip(5)})
    out = tmp_path / "aug.h5"
    code = main(["augment", "kaggle:alice/flowers", "--size", "16", "16", "--target", "300",
                 "--rotate", "10", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with h5py.File(out) as f:
        assert f["train/images"].shape == (300, 16, 16, 3)
    capsys.readouterr()
    assert main(["fetch", "kaggle:alice/flowers/versions/1"]) == 0
    assert "extracted" in capsys.readouterr().out
    assert main(["verify", "kaggle:alice/flowers"]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"my-flowers": {"kaggle": "alice/flowers"}}))
    monkeypatch.setenv("DLSETS_REGISTRY", str(reg))
    assert main(["list"]) == 0
    assert "my-flowers" in capsys.readouterr().out
    assert main(["remove", "kaggle:alice/flowers"]) == 0
    assert not kaggle.dataset_dir("kaggle:alice/flowers").exists()
    for name in _CRED_ENV:
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    assert main(["fetch", "kaggle:alice/flowers"]) == 1
    err = capsys.readouterr().err
    assert "credentials" in err and "Traceback" not in err


def test_api_failures_are_retried_and_a_dead_api_falls_back_to_the_cache(kg, creds,
                                                                        monkeypatch, caplog):
    kg.add("alice/flowers", {1: flowers_zip(3)})
    kg.failures = [503, 429]
    folder = kaggle.fetch("kaggle:alice/flowers")
    assert folder.is_dir() and kg.methods() == ["GetDataset"] * 3 + ["DownloadDataset"]
    monkeypatch.setenv("DLSETS_KAGGLE_API", "http://127.0.0.1:9")  # nothing listens there
    with caplog.at_level("WARNING", logger="dlsets"):
        assert kaggle.fetch("kaggle:alice/flowers") == folder
    assert "using version 1 from the cache" in caplog.text
    with pytest.raises(DownloadError, match="failed 4 times"):
        kaggle.fetch("kaggle:alice/other")


def test_an_unresolvable_api_host_is_one_lookup_and_one_clear_line(kg, creds, monkeypatch):
    import socket

    real = socket.getaddrinfo
    lookups = []

    def getaddrinfo(host, *args, **kwargs):
        if host == "kaggle-test.invalid":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLSETS_KAGGLE_API", "http://kaggle-test.invalid")
    with pytest.raises(DownloadError) as err:
        dlsets.load_kaggle("kaggle:owner/flowers")
    assert lookups == ["kaggle-test.invalid"]  # not retried
    assert "cannot resolve kaggle-test.invalid" in str(err.value)
    assert "ConnectionError(" not in str(err.value)
