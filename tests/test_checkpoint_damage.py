"""Checkpoints that are damaged, foreign or half-written: one clear error naming the path,
and no temporary files left behind by a writer that was killed."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import gpugrad as gg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkpoint():
    return {"w": gg.tensor(np.arange(6.0).reshape(2, 3)), "meta": [1, "two", (3.5, None)],
            "nested": {"b": gg.tensor(np.array([1, -2], dtype=np.int64))},
            # an optimizer's state is keyed by parameter index
            "state": {0: {"step": 3}, 1: {"step": 4}}}


def _same_as_saved(back):
    return (set(back) == {"w", "meta", "nested", "state"} and set(back["nested"]) == {"b"}
            and back["state"] == {0: {"step": 3}, 1: {"step": 4}}
            and back["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
            and back["w"].dtype == gg.float64
            and back["meta"] == [1, "two", (3.5, None)]
            and back["nested"]["b"].tolist() == [1, -2] and back["nested"]["b"].dtype == gg.int64)


def _load_outcome(path):
    """'same' when the file loads as the saved object, 'error' for the ValueError naming the
    path; anything else fails the test."""
    try:
        back = gg.load(path)
    except ValueError as err:
        assert str(path) in str(err)
        assert "allow_pickle" not in str(err)
        return "error"
    assert _same_as_saved(back), "a damaged checkpoint loaded as something else"
    return "same"


def test_a_flipped_bit_anywhere_gives_the_same_value_error_or_the_same_object(tmp_path):
    good = tmp_path / "good.npz"
    gg.save(_checkpoint(), good)
    raw = good.read_bytes()
    assert _load_outcome(good) == "same"
    # every bit of the zip directory at the end (where the compression method, flags and
    # names sit), one seeded bit of every other byte
    rng = np.random.default_rng(0)
    tail = len(raw) - 256
    positions = [8 * i + int(rng.integers(8)) for i in range(tail)]
    positions += range(8 * tail, 8 * len(raw))
    damaged = tmp_path / "damaged.npz"
    outcomes = {"same": 0, "error": 0}
    for pos in positions:
        flipped = bytearray(raw)
        flipped[pos // 8] ^= 1 << (pos % 8)
        damaged.write_bytes(bytes(flipped))
        outcomes[_load_outcome(damaged)] += 1
    assert outcomes["error"] > len(positions) // 2


def test_truncated_random_and_foreign_files_give_the_value_error(tmp_path):
    good = tmp_path / "good.npz"
    gg.save(_checkpoint(), good)
    raw = good.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in range(0, len(raw), 5):
        cut.write_bytes(raw[:n])
        assert _load_outcome(cut) == "error"
    rng = np.random.default_rng(1)
    noise = tmp_path / "noise.npz"
    for _ in range(20):
        noise.write_bytes(rng.bytes(int(rng.integers(1, 400))))
        assert _load_outcome(noise) == "error"
    noise.write_bytes(b"PK\x03\x04" + rng.bytes(300))
    assert _load_outcome(noise) == "error"
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    assert _load_outcome(single) == "error"
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __header__=np.array([{"format": "gpugrad-checkpoint"}], dtype=object))
    assert _load_outcome(pickled) == "error"


def test_a_missing_file_still_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        gg.load(tmp_path / "absent.npz")


def test_save_errors_name_the_path_never_the_temporary_file(tmp_path):
    missing = tmp_path / "no" / "such" / "folder" / "c.npz"
    with pytest.raises(FileNotFoundError) as info:
        gg.save({"w": gg.ones(2)}, missing)
    assert str(missing) in str(info.value) and ".gpugrad-" not in str(info.value)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(OSError) as info:
        gg.save({"w": gg.ones(2)}, folder)
    assert str(folder) in str(info.value) and ".gpugrad-" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["a_folder"]
    assert os.listdir(folder) == []


_KILLED_WRITER = """
import os, signal, sys
import gpugrad as gg

def die(fd):                      # the data is written, the rename has not happened
    os.kill(os.getpid(), signal.SIGKILL)

os.fsync = die
gg.save({"w": gg.zeros(4)}, sys.argv[1])
"""


def test_a_writer_killed_mid_save_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "c.npz"
    gg.save({"w": gg.ones(4)}, path)
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
    result = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    leftovers = [n for n in os.listdir(tmp_path) if n != "c.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".gpugrad-")
    assert gg.load(path)["w"].tolist() == [1.0] * 4        # the old checkpoint, whole

    gg.save({"w": gg.full((4,), 2.0)}, tmp_path / "other.npz")
    assert sorted(os.listdir(tmp_path)) == ["c.npz", "other.npz"]
    assert gg.load(tmp_path / "other.npz")["w"].tolist() == [2.0] * 4


def test_cleanup_spares_temporaries_that_may_still_be_written(tmp_path):
    host = socket.gethostname()
    live = tmp_path / f".gpugrad-{os.getpid()}@{host}-abcd1234.tmp"      # this process
    elsewhere = tmp_path / ".gpugrad-1@some_other_host-abcd1234.tmp"    # can't tell there
    fresh_legacy = tmp_path / ".gpugrad-abcd1234.tmp"
    old_legacy = tmp_path / ".gpugrad-efgh5678.tmp"
    unrelated = tmp_path / ".gpugrad-notes.txt"
    for f in (live, elsewhere, fresh_legacy, old_legacy, unrelated):
        f.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_legacy, (two_days_ago, two_days_ago))
    gg.save({"w": gg.ones(1)}, tmp_path / "c.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["c.npz", live.name, elsewhere.name, fresh_legacy.name, unrelated.name])
