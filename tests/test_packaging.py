"""The wheel carries the kernels, their shim and the bundled data, and an installed
gpugrad finds them from any folder."""
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(out), ROOT],
                            capture_output=True, text=True, timeout=600)
    if result.returncode:
        pytest.skip(f"cannot build a wheel here: {result.stderr[-500:]}")
    (path,) = out.glob("gpugrad-*.whl")
    return path


def test_wheel_carries_kernels_shim_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("gpugrad/kernels/elementwise.cu", "gpugrad/kernels/softmax.cu",
                     "gpugrad/kernels/reduce.cu", "gpugrad/kernels/optim.cu",
                     "gpugrad/kernels/common.cuh", "gpugrad/kernels/shim/cuda_shim.h",
                     "gpugrad/kernels/shim/cuda_shim_launch.h", "gpugrad/data/mnist-5k.npz"):
        assert expected in names, expected


def test_installed_package_finds_its_files_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=600)
    code = ("import os, gpugrad, gpugrad.kernels.cuda as c, gpugrad.data as d;"
            "assert gpugrad.__file__.startswith(os.environ['TARGET']), gpugrad.__file__;"
            "print(len(c.read_source('softmax')) > 1000, len(d.mnist()[0]))")
    env = dict(os.environ, PYTHONPATH=str(target), TARGET=str(target), GPUGRAD_DEVICE="cpu")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "4000"]
