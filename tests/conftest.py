import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import pytest  # noqa: E402

_ENV = ("DLSETS_CACHE", "DLSETS_MIRROR", "DLSETS_OFFLINE", "DLSETS_REGISTRY", "DLSETS_TIMEOUT",
        "DLSETS_RETRY_BASE", "DLSETS_MIN_RATE", "DLSETS_RATE_WINDOW", "DLSETS_DEADLINE")


# Test modules that need an optional extra throughout. `--core` (the extra-free runs that
# .ci/run makes on every Python present, against the installed wheel) leaves them out, and the
# tests marked `extra`; a plain run collects everything, so a missing extra fails there.
EXTRA_MODULES = {"test_torch.py", "test_keras.py", "test_shards_ray.py", "test_tensorboard.py",
                 "test_svhn.py", "test_sample_ids.py", "test_worker_memory.py",
                 "test_notebooks.py"}


def pytest_addoption(parser):
    parser.addoption("--core", action="store_true",
                     help="run only the tests that need no optional extra (torch, keras, ...)")


def pytest_ignore_collect(collection_path, config):
    if config.getoption("--core") and collection_path.name in EXTRA_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--core"):
        return
    dropped = [it for it in items if it.get_closest_marker("extra")]
    if dropped:
        items[:] = [it for it in items if not it.get_closest_marker("extra")]
        config.hook.pytest_deselected(items=dropped)


@pytest.fixture(autouse=True)
def _isolated_dlsets(tmp_path, monkeypatch):
    """Every test gets its own cache and no inherited DLSETS_* settings or registered files."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLSETS_CACHE", str(tmp_path / "dlsets-cache"))
    # Real backoff is seconds; tests that check backoff itself set their own base.
    monkeypatch.setenv("DLSETS_RETRY_BASE", "0.01")
    # Progress notices off a terminal start after seconds of work: on a slow machine they would
    # add lines to the stderr that tests compare (tests/test_progress.py tests them).
    from dlsets.common import progress

    monkeypatch.setattr(progress, "NOTICE_AFTER", 3600.0)
    from dlsets.sources import registry

    saved = list(registry._user_files)
    registry._warned.clear()
    yield
    registry._user_files[:] = saved


@pytest.fixture
def server():
    """A scripted HTTP server on 127.0.0.1 (see tests/httpserver.py)."""
    from tests.httpserver import Server

    with Server() as srv:
        yield srv
