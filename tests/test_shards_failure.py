"""A shard run that fails before writing anything leaves nothing it created: no claim, no
folder (a full disk, stood in for by a file size limit in a real process)."""

import os
import subprocess
import sys
import textwrap

import pytest

from dlsets.scale.shard_claim import CLAIM

FAILING = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    from dlsets.augment import Augmenter
    from dlsets.errors import DlsetsError
    from dlsets.scale.shards import expand_shard, expand_to_shards

    out, fmt, how = sys.argv[1:4]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    y = (np.arange(40) % 4).astype(np.uint8)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as ENOSPC: an OSError per write
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the claim fits, no shard does
    kw = dict(augmenter=Augmenter(rotate=10, seed=1), format=fmt, progress=False)
    try:
        if how == "one":
            expand_shard(x, y, 400, out, shard=1, shards=2, **kw)
        else:
            expand_to_shards(x, y, 400, out, shards=2, **kw)
    except DlsetsError as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
""")


def _fail(tmp_path, out, fmt, how):
    script = tmp_path / "fail.py"
    script.write_text(FAILING)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    got = subprocess.run([sys.executable, str(script), str(out), fmt, how], env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 3, got.stderr
    return got.stdout


@pytest.mark.parametrize("fmt,how", [("hdf5", "all"), ("webdataset", "one")])
def test_a_failed_run_takes_back_its_claim_and_folder(tmp_path, fmt, how):
    out = tmp_path / "made" / "shards"
    message = _fail(tmp_path, out, fmt, how)
    assert "Error" in message.split()[0]
    assert not out.exists()  # made by the run: taken back, claim and all
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")
    _fail(tmp_path, kept, fmt, how)
    assert sorted(os.listdir(kept)) == ["notes.txt"]  # not the run's: left as it was


def test_a_claim_guarding_written_shards_stays(tmp_path):
    from dlsets.scale.shard_claim import release

    out = tmp_path / "s"
    out.mkdir()
    from dlsets.store import atomic

    (out / CLAIM).write_text(f'{{"owner": "{atomic.owner()}", "key": "k"}}')
    (out / "augmented-00000-of-00002.h5").write_bytes(b"x")
    release(out, made_folder=True)
    assert (out / CLAIM).exists()
    (out / "augmented-00000-of-00002.h5").unlink()
    release(out, made_folder=True)
    assert not out.exists()
