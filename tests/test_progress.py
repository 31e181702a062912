import logging

import dlsets.common.progress as progress


def test_off_a_terminal_long_work_gets_short_notices_and_short_work_none(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="dlsets")
    with progress.bar(100, "quick", unit="img") as b:  # not a TTY under pytest
        b.update(100)
    assert caplog.records == []  # ended within NOTICE_AFTER: nothing said
    monkeypatch.setattr(progress, "NOTICE_AFTER", 0.0)
    monkeypatch.setattr(progress, "NOTICE_EVERY", 3600.0)
    with progress.bar(4_000_000, "mnist: train.gz", unit="B") as b:
        b.update(1_000_000)
        b.update(1_000_000)  # within NOTICE_EVERY of the first notice: no second line
        b.update(2_000_000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("mnist: train.gz: 1.0 MB of 4.0 MB (25%) after ")
    assert len(lines) == 2 and lines[1].startswith("mnist: train.gz: done after ")
    assert lines[1].endswith("(4.0 MB)")


def test_quiet_and_forced_bars_say_nothing_in_the_log(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="dlsets")
    monkeypatch.setattr(progress, "NOTICE_AFTER", 0.0)
    for flag in (False, True):
        with progress.bar(10, "x", progress=flag) as b:
            b.update(10)
    assert caplog.records == []


def test_a_failure_is_said_as_stopped_not_done(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="dlsets")
    monkeypatch.setattr(progress, "NOTICE_AFTER", 0.0)
    try:
        with progress.bar(None, "augment", unit="img") as b:
            b.update(5)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert caplog.records[-1].getMessage().startswith("augment: stopped after ")
