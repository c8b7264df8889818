"""Every kernels/*.cu compiles with nvcc (sm_80, sm_90) without register spills, and
through NVRTC, which is stricter. Skipped where nvcc or NVRTC is absent."""
import glob
import os
import re
import shutil
import subprocess

import pytest

KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "gpugrad", "kernels")
SOURCES = sorted(glob.glob(os.path.join(KERNELS, "*.cu")))


def test_there_are_kernel_sources():
    names = {os.path.basename(s) for s in SOURCES}
    assert {"elementwise.cu", "softmax.cu", "reduce.cu", "optim.cu"} <= names


def _ptxas_report(text):
    """{kernel: (registers, spill_stores, spill_loads)} from an -Xptxas -v report."""
    report = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = m.group(1)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            report.setdefault(current, [0, 0, 0])[1:] = [int(m.group(1)), int(m.group(2))]
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            report.setdefault(current, [0, 0, 0])[0] = int(m.group(1))
    return report


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_nvcc_compiles_without_spills(source, arch, tmp_path):
    result = subprocess.run(
        ["nvcc", "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-I", KERNELS,
         "-o", str(tmp_path / "out.cubin"), source],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = _ptxas_report(result.stderr + result.stdout)
    assert report, "ptxas printed no resource report"
    spilling = {k: v for k, v in report.items() if v[1] or v[2]}
    assert not spilling, f"register spills: {spilling}"
    print(f"\n{os.path.basename(source)} {arch}: " + ", ".join(
        f"{k}={v[0]}r" for k, v in sorted(report.items())))


def _nvrtc():
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:
        return None


@pytest.mark.skipif(_nvrtc() is None, reason="CuPy's NVRTC is not available: pip install "
                    "\".[gpu-test]\" (the nvcc compile tests run without it)")
@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_nvrtc_compiles(source):
    nvrtc = _nvrtc()
    with open(source) as fh:
        code = fh.read()
    with open(os.path.join(KERNELS, "common.cuh")) as fh:
        header = fh.read()
    prog = nvrtc.createProgram(code, os.path.basename(source), [header.encode()],
                               [b"common.cuh"])
    try:
        try:
            nvrtc.compileProgram(prog, ["-arch=sm_90", "-std=c++17"])
        except Exception as err:
            pytest.fail(f"NVRTC failed on {os.path.basename(source)}: {err}\n"
                        f"{nvrtc.getProgramLog(prog)}")
        assert len(nvrtc.getCUBIN(prog)) > 0
    finally:
        nvrtc.destroyProgram(prog)
