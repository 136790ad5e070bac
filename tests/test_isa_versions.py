"""Every ISA version of the CPU kernels computes the same bits.

The extensions carry one version of each register-resident kernel per x86-64 level (AVX-512,
AVX2, SSE2: csrc/include/fastrec/simd_cpu.h), and the loader binds the one the CPU runs, so a
test of the extension only ever exercises one of them. tests/isa/isa_driver.cpp runs the SGD and
NMF kernels (register-resident and generic ranks, float32 and float64) and prints two hashes of
their outputs: the NMF Frobenius full mode's, whose products are fused multiply-adds on
ISAs with FMA (AVX2 and up) and multiply-then-add on SSE2, and everything else's. It is built
here once per level with the extensions' floating-point flags, plus once with the
multiversioned dispatch as the extensions have it. Every build must agree on the second hash,
and the builds with FMA on the first.
"""

import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "isa" / "isa_driver.cpp"
FLAGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-wrapv", f"-I{ROOT / 'csrc' / 'include'}"]
# Level -> the /proc/cpuinfo flags it needs to run here.
LEVELS = {
    "x86-64": set(),
    "x86-64-v3": {"avx2", "fma", "bmi2"},
    "x86-64-v4": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"},
}

pytestmark = [
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 ISA levels only"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"),
    pytest.mark.skipif(not DRIVER.exists(), reason="needs the source tree"),
]


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def build_and_run(tmp_path: Path, name: str, extra: list[str]) -> str:
    exe = tmp_path / name
    build = subprocess.run(["g++", *FLAGS, *extra, str(DRIVER), "-o", str(exe)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_every_isa_version_computes_the_same_bits(tmp_path):
    flags = cpu_flags()
    builds = {"multiversioned": []}
    for level, needs in LEVELS.items():
        if needs <= flags:
            builds[level] = ["-DFASTREC_NO_CLONES", f"-march={level}"]
    if len(builds) < 3:
        pytest.skip(f"this CPU runs only {sorted(builds)}")
    with ThreadPoolExecutor(2) as pool:
        hashes = dict(zip(builds, pool.map(lambda item: build_and_run(tmp_path, *item),
                                           builds.items()), strict=True))
    fused = {name: h.split()[0] for name, h in hashes.items() if name != "x86-64"}
    rest = {name: h.split()[1] for name, h in hashes.items()}
    assert len(set(rest.values())) == 1, hashes
    assert len(set(fused.values())) == 1, hashes
