"""Data loading, the IDX parser, checkpoints and the command line."""
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import data, serialization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(payload)


def _write_mnist(folder, n_train=12, n_test=5, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                   rng.integers(0, 256, size=(n, 28, 28)), gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}",
                   rng.integers(0, 10, size=n), gz)


def test_bundled_subset_splits_4000_1000():
    train, test = data.mnist()
    assert train.images.shape == (4000, 784) and test.images.shape == (1000, 784)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int64
    assert set(np.unique(train.labels)) == set(range(10))
    again, _ = data.mnist()
    np.testing.assert_array_equal(train.labels, again.labels)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_are_parsed(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    train, test = data.mnist(str(tmp_path))
    assert train.images.shape == (12, 784) and test.labels.shape == (5,)
    raw = data.read_idx(str(tmp_path / f"train-images-idx3-ubyte{'.gz' if gz else ''}"))
    assert raw.shape == (12, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_allclose(train.images[0], (raw[0].ravel() / 255 - 0.1307) / 0.3081,
                               rtol=1e-5)


def test_missing_and_malformed_idx_files_are_named(tmp_path):
    _write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.mnist(str(tmp_path))
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        data.mnist(str(tmp_path))
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.mnist(str(tmp_path))


def test_loader_batches_shuffle_with_seed_and_drop_last():
    train, _ = data.mnist()
    loader = data.DataLoader(train, 512, seed=5, drop_last=True, device="cpu")
    batches = list(loader)
    assert len(batches) == len(loader) == 4000 // 512
    assert all(x.shape == (512, 784) and y.shape == (512,) for x, y in batches)
    first = [y.numpy() for _, y in data.DataLoader(train, 512, seed=5, device="cpu")]
    np.testing.assert_array_equal(first[0], batches[0][1].numpy())
    assert len(first) == 8 and first[-1].shape == (4000 - 7 * 512,)


def test_save_load_round_trip_with_format_version(tmp_path):
    path = str(tmp_path / "c.npz")
    obj = {"w": gg.randn(3, 2), "meta": {"epochs": 3, "sizes": [1, 2], "name": "x"}}
    gg.save(obj, path)
    back = gg.load(path)
    np.testing.assert_array_equal(back["w"].numpy(), obj["w"].numpy())
    assert back["meta"] == {"epochs": 3, "sizes": [1, 2], "name": "x"}
    with np.load(path) as raw:
        header = json.loads(bytes(raw["__header__"]).decode())
    assert header["format"] == "gpugrad-checkpoint" and header["version"] == 1


def test_crash_mid_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "c.npz")
    gg.save({"w": gg.ones(4)}, path)

    def crash(*args, **kwargs):
        raise OSError("disk on fire")
    monkeypatch.setattr(serialization.np, "savez", crash)
    with pytest.raises(OSError, match="disk on fire"):
        gg.save({"w": gg.zeros(4)}, path)
    monkeypatch.undo()
    assert gg.load(path)["w"].tolist() == [1.0] * 4
    assert os.listdir(tmp_path) == ["c.npz"]


def test_corrupt_or_foreign_files_name_the_path(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupt.npz"):
        gg.load(str(corrupt))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(2))
    with pytest.raises(ValueError, match="foreign.npz"):
        gg.load(str(foreign))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
    return subprocess.run([sys.executable, "-m", "gpugrad", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_train_end_to_end_with_json_and_checkpoint(tmp_path):
    ckpt = tmp_path / "model.npz"
    result = _cli("train", "--epochs", "2", "--hidden", "32", "--batch-size", "256",
                  "--save", str(ckpt), "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "train_seconds", "samples_per_second", "device", "epochs"):
        assert key in summary
    assert summary["device"] == "cpu" and summary["epochs"] == 2
    assert summary["test_accuracy"] > 0.7
    state = gg.load(str(ckpt))
    model = gg.nn.MLP(state["sizes"])
    model.load_state_dict(state["model"])


def test_cli_train_reads_idx_folder_and_reports_errors(tmp_path):
    _write_mnist(tmp_path, n_train=64, n_test=16)
    ok = _cli("train", "--epochs", "1", "--data", str(tmp_path), "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert "test accuracy" in ok.stdout
    missing = _cli("train", "--data", str(tmp_path / "nope"), "--no-progress")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_cli_info():
    result = _cli("info")
    assert result.returncode == 0, result.stderr
    assert "gpugrad" in result.stdout and "default device: cpu" in result.stdout
