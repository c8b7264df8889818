"""The wheel carries the kernels, their shim and the bundled data, and an installed
gpugrad finds them from any folder."""
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_tools_missing():
    """Why a wheel cannot be built here without build isolation (offline), or None:
    setuptools 70.1 or newer builds wheels itself; older ones need the wheel package."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        setuptools = tuple(int(v) for v in version("setuptools").split(".")[:2])
    except PackageNotFoundError:
        setuptools = None
    if setuptools is None or setuptools < (68, 0):
        return ("building the wheel needs setuptools 70.1 or newer in this environment, "
                "found " + (version("setuptools") if setuptools else "none") +
                ": pip install \".[test]\"")
    if setuptools < (70, 1) and importlib.util.find_spec("wheel") is None:
        return (f"building the wheel with setuptools {version('setuptools')} needs the wheel "
                "package, or setuptools 70.1 or newer: pip install \".[test]\"")
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    why_not = _build_tools_missing()
    if why_not:
        pytest.skip(why_not)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(out), ROOT],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"pip wheel failed:\n{result.stderr}"
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


def _pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)


def test_test_extra_stays_light_and_gpu_needs_have_their_own():
    extras = _pyproject()["project"]["optional-dependencies"]
    heavy = ("cupy", "nvidia-", "torch", "jax")
    assert not [r for r in extras["test"] if r.startswith(heavy)], extras["test"]
    assert any(r.startswith("cupy") for r in extras["gpu-test"])
    assert any(r.startswith("nvidia-cuda-nvrtc") for r in extras["gpu-test"])


def test_pytest_summary_gives_skip_reasons():
    addopts = _pyproject()["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "-rs" in addopts or any(o.startswith("-r") and "s" in o for o in addopts)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    train, test = block.strip().splitlines()
    assert train.startswith("pip install") and train.endswith("gpugrad train")
    assert test.startswith("pip install") and "pytest" in test
    assert "venv" in section and "clone" in section.lower() and "cd" in section
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        assert test in fh.read()
