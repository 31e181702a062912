import threading

import pytest

from dlsets.atomic import replacing


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    with replacing(path) as tmp:
        tmp.write_bytes(b"one")
    assert path.read_bytes() == b"one"
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_bytes(b"two, half-wri")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"one"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_threads_writing_one_path_never_share_a_temp_file(tmp_path):
    path = tmp_path / "f.bin"
    seen, barrier = [], threading.Barrier(4)

    def write(i):
        with replacing(path) as tmp:
            seen.append(tmp)
            barrier.wait(timeout=10)  # all four temp files exist at once
            tmp.write_bytes(bytes([i]) * 1000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4
    data = path.read_bytes()
    assert len(data) == 1000 and len(set(data)) == 1
