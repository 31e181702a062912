import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import pytest  # noqa: E402

_ENV = ("DLSETS_CACHE", "DLSETS_MIRROR", "DLSETS_OFFLINE", "DLSETS_REGISTRY", "DLSETS_TIMEOUT",
        "DLSETS_RETRY_BASE", "DLSETS_MIN_RATE", "DLSETS_RATE_WINDOW", "DLSETS_DEADLINE")


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
    from dlsets import progress

    monkeypatch.setattr(progress, "NOTICE_AFTER", 3600.0)
    from dlsets import registry

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
