"""Writers of other settings into one folder at the same time: one expansion wins, whole; the
others are refused before writing anything. Writers of the same settings all go on."""

import json
import os
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlsets.augment import Augmenter, expand  # noqa: E402
from dlsets.errors import OptionError  # noqa: E402
from dlsets.scale.shard_claim import CLAIM  # noqa: E402
from dlsets.scale.shard_reader import load_shards  # noqa: E402
from dlsets.scale.shards import expand_to_shards, verify_shards  # noqa: E402
from dlsets.store import atomic  # noqa: E402
from tests.test_shards import AUG, _data  # noqa: E402

WRITER = textwrap.dedent("""
    import os, sys, time
    from dlsets.augment import Augmenter
    from dlsets.scale.shards import expand_to_shards
    from tests.test_shards import AUG, _data

    out, seed, ready, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    class Wait(Augmenter):  # works like Augmenter (same repr); waits mid-shard for "go"
        def __call__(self, images, masks=None, *, start=None, channels=None):
            if ready != "-":
                open(ready, "w").close()
                for _ in range(600):
                    if os.path.exists(go):
                        break
                    time.sleep(0.1)
            return super().__call__(images, masks, start=start, channels=channels)

    x, y = _data()
    expand_to_shards(x, y, 300, out, shards=3, augmenter=Wait(**AUG), seed=seed, chunk_size=40)
    print("WROTE")
""")


def _start(tmp_path, out, seed, ready="-", go="-"):
    script = tmp_path / "writer.py"
    if not script.exists():  # rewriting it while an earlier writer starts could hand it ""
        script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    return subprocess.Popen([sys.executable, str(script), str(out), str(seed), str(ready),
                             str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait(p):
    out, err = p.communicate(timeout=180)
    # success is the whole script run: exit 0 alone would also pass an empty script
    return (0 if p.returncode == 0 and out.strip() == "WROTE" else p.returncode or 1), err


def _expanded(seed):
    x, y = _data()
    return expand(x, y, 300, augmenter=Augmenter(**AUG), seed=seed)


def test_a_writer_of_other_settings_is_refused_while_the_first_is_mid_shard(tmp_path):
    out, ready, go = tmp_path / "out", tmp_path / "ready", tmp_path / "go"
    first = _start(tmp_path, out, 0, ready, go)
    for _ in range(1200):  # until the first writer is inside its first shard
        if ready.exists() or first.poll() is not None:
            break
        time.sleep(0.1)
    assert ready.exists(), first.communicate()
    code, err = _wait(_start(tmp_path, out, 1))  # other seed, while no shard is complete yet
    go.touch()
    assert code != 0 and "another expansion" in err and "seed 0 there, 1 here" in err, err
    code, err = _wait(first)
    assert code == 0, err
    assert verify_shards(out).complete
    ex, ey = _expanded(0)
    got = load_shards(out)
    assert np.array_equal(np.asarray(got.images), ex) and np.array_equal(got.labels, ey)


def test_writers_started_together_one_expansion_wins_whole(tmp_path):
    out = tmp_path / "out"
    seeds = [0, 1, 0, 1]
    procs = [_start(tmp_path, out, s) for s in seeds]
    results = [_wait(p) for p in procs]
    ok = {s for s, (code, _) in zip(seeds, results, strict=True) if code == 0}
    assert len(ok) == 1, results  # every writer of the winning settings, none of the other
    winner = ok.pop()
    for s, (code, err) in zip(seeds, results, strict=True):
        assert (code == 0) == (s == winner), err
        if code:
            assert "another expansion" in err
    ex, ey = _expanded(winner)
    got = load_shards(out)
    assert np.array_equal(np.asarray(got.images), ex) and np.array_equal(got.labels, ey)
    assert json.loads((out / CLAIM).read_text())["settings"]["seed"] == winner


def test_a_claim_left_by_a_dead_writer_with_nothing_written_is_taken_over(tmp_path):
    x, y = _data()
    aug = Augmenter(**AUG)
    out = tmp_path / "out"
    expand_to_shards(x, y, 100, out, shards=2, augmenter=aug, seed=5)
    claim = json.loads((out / CLAIM).read_text())
    for p in list(out.iterdir()):
        p.unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    claim["owner"] = f"{atomic.HOST}@{dead}"
    (out / CLAIM).write_text(json.dumps(claim))
    expand_to_shards(x, y, 100, out, shards=2, augmenter=aug, seed=6)  # taken over
    assert verify_shards(out).complete
    # a live owner's claim (this process) is not stale, even with nothing written
    for p in list(out.iterdir()):
        if p.name != CLAIM:
            p.unlink()
    with pytest.raises(OptionError, match="another expansion.*seed 6 there, 7 here"):
        expand_to_shards(x, y, 100, out, shards=2, augmenter=aug, seed=7)
