"""Every CUDA kernel compiles to cubin (so ptxas runs: registers, shared memory, resources) for
every supported architecture, with exactly the options the loader uses plus CuPy's runtime
flags. Needs CuPy and NVRTC, not a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrec.backends.cuda import _loader


def _nvrtc_program_class(arch=None):
    try:
        from cupy.cuda.compiler import _NVRTCProgram
        from cupy_backends.cuda.libs import nvrtc

        major, _ = nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - ImportError or a missing libnvrtc.so
        pytest.skip(f"NVRTC unavailable ({type(exc).__name__}: {exc}); "
                    "pip install cupy-cuda13x 'nvidia-cuda-nvrtc==13.*'")
    last = _loader.LAST_NVRTC_FOR_ARCH.get(arch)
    if last is not None and major > last:
        pytest.skip(f"NVRTC {major} cannot target sm_{arch} (the last that can is {last}: "
                    "the cuda12 extra, cupy-cuda12x with nvidia-cuda-nvrtc-cu12)")
    return _NVRTCProgram


@pytest.mark.parametrize("arch", _loader.SUPPORTED_ARCHS)
@pytest.mark.parametrize("source", sorted(_loader.NAME_EXPRESSIONS))
def test_compiles_to_cubin(source, arch):
    program_class = _nvrtc_program_class(arch)
    from cupy.cuda.compiler import CompileException

    expressions = list(_loader.NAME_EXPRESSIONS[source])
    program = program_class(_loader.kernel_source(source), f"{source}.cu",
                            name_expressions=expressions, method="cubin")
    options = (*_loader.compile_options(), *_loader.CUPY_RUNTIME_OPTIONS, f"-arch=sm_{arch}")
    try:
        cubin, mapping = program.compile(options)
    except CompileException as exc:
        pytest.fail(f"{source}.cu does not compile for sm_{arch}:\n{exc}")
    assert cubin[:4] == b"\x7fELF"
    assert sorted(mapping) == sorted(expressions)
    assert all(mapping.values())


def test_options_change_when_an_included_header_changes(tmp_path, monkeypatch):
    """CuPy's disk cache keys on the .cu text and the options only: editing a header that a
    kernel includes must change the options, or a stale cubin would be loaded."""
    import shutil

    root = tmp_path / "csrc"
    shutil.copytree(_loader.source_root(), root)
    monkeypatch.setattr(_loader, "source_root", lambda: root)

    def options():
        _loader.source_hash.cache_clear()
        return _loader.compile_options()

    before, source = options(), _loader.kernel_source("ncf")
    assert f"-I{root / 'include'}" in before
    header = root / "include" / "fastrec" / "rng.h"
    header.write_text(header.read_text() + "\n// edited\n")
    after = options()
    assert _loader.kernel_source("ncf") == source
    assert after != before
    header.write_text(header.read_text().removesuffix("\n// edited\n"))
    assert options() == before
    _loader.source_hash.cache_clear()


def test_emulator_selftest_kernels_are_real_cuda():
    """The emulator's own test kernels compile with NVRTC too: they test CUDA, not a dialect."""
    program_class = _nvrtc_program_class()
    from cupy.cuda.compiler import CompileException

    path = Path(__file__).resolve().parent / "emulator" / "selftest_kernels.cu"
    program = program_class(path.read_text(), path.name, method="cubin")
    try:
        cubin, _ = program.compile((*_loader.CUPY_RUNTIME_OPTIONS, "-std=c++17",
                                    "-arch=sm_75"))
    except CompileException as exc:
        pytest.fail(f"{path.name} is not valid CUDA:\n{exc}")
    assert cubin[:4] == b"\x7fELF"
