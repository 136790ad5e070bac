"""Build the Cython kernels; OpenMP is detected by a compile test and the same sources build serial
without it. Environment switches: FASTREC_DISABLE_OPENMP=1 (serial build), FASTREC_DEBUG=1
(bounds checks on, -O0), FASTREC_NO_CLONES=1 (no runtime ISA dispatch), FASTREC_EXTENSIONS=a,b
(build only those .pyx modules, for quick test builds)."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent.resolve()
CSRC = HERE / "csrc"
CYTHON_DIR = Path("fastrec") / "backends" / "cython"
# Built extensions by a hash of everything that goes into them (ParallelBuildExt).
EXT_CACHE = HERE / "build" / "fastrec-ext-cache"
CYTHON_METADATA = re.compile(rb"/\* BEGIN: Cython Metadata\n.*?\nEND: Cython Metadata \*/", re.S)


def _compiler():
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or empty lists when it does not build."""
    if os.environ.get("FASTREC_DISABLE_OPENMP") == "1":
        print("fastrec: OpenMP disabled by FASTREC_DISABLE_OPENMP", file=sys.stderr)
        return [], []
    flags = ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "omp_check.cpp"
        src.write_text(
            "#include <omp.h>\nint main(void) {\n  int n = 0;\n"
            "#pragma omp parallel reduction(+:n)\n  n += 1;\n  return n > 0 ? 0 : 1;\n}\n"
        )
        compiler = _compiler()
        try:
            objects = compiler.compile([str(src)], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, "omp_check", output_dir=tmp, extra_postargs=flags)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "no OpenMP"
            print(f"fastrec: building without OpenMP ({exc})", file=sys.stderr)
            return [], []
    return flags, flags


def extensions():
    debug = os.environ.get("FASTREC_DEBUG") == "1"
    omp_compile, omp_link = openmp_flags()
    # No FMA contraction: every ISA version, every machine and the CUDA kernels (--fmad=false)
    # round the same way, so one seed gives one model bit for bit. (Fused multiply-adds are
    # written out where wanted: the NMF Frobenius dense products on ISAs with FMA, nmf_cpu.h.)
    # -fno-wrapv undoes CPython's -fwrapv: with wrapping int arithmetic GCC cannot prove that
    # a[H + j] walks consecutive addresses, and loops indexed that way stay scalar.
    compile_args = ["-std=c++17", "-O0" if debug else "-O3", "-ffp-contract=off", "-fno-wrapv",
                    *omp_compile]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if os.environ.get("FASTREC_NO_CLONES") == "1":
        macros.append(("FASTREC_NO_CLONES", "1"))
    only = [n for n in os.environ.get("FASTREC_EXTENSIONS", "").split(",") if n]
    exts = []
    for pyx in sorted((HERE / CYTHON_DIR).glob("*.pyx")):
        if only and pyx.stem not in only:
            continue
        module = ".".join((*CYTHON_DIR.parts, pyx.stem))
        exts.append(
            Extension(
                module,
                [str(pyx.relative_to(HERE))],
                language="c++",
                include_dirs=[np.get_include(), str(CSRC / "include"), str(CYTHON_DIR)],
                define_macros=macros,
                extra_compile_args=compile_args,
                extra_link_args=omp_link,
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "cdivision": not debug,
        "initializedcheck": debug,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives, nthreads=os.cpu_count() or 1)


class BuildPyWithCsrc(build_py):
    """Ship csrc/ inside the package: the CUDA backend compiles the .cu sources at first use."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "fastrec" / "_csrc"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(CSRC, target, ignore=shutil.ignore_patterns("*.o", "*.so"))


class ParallelBuildExt(build_ext):
    """Compile the extensions concurrently, one per core, unless ``-j`` says otherwise (the
    build is most of a fresh install's time), and never compile the same extension twice.

    ``pip install .`` followed by ``pip install -e .`` (the README's two commands) builds every
    extension twice from the same sources with the same flags, in two throwaway build
    environments; pip builds a local project in its own tree, so the second build finds the
    first's libraries in ``build/fastrec-ext-cache``, keyed by a hash of all that goes into them
    (generated C++, every header, flags, compiler and its version, Python, NumPy).
    """

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        # The headers are inputs too: distutils would skip a build whose .cpp is older than the
        # library even though a header it includes changed; the cache key below has them all.
        self.force = True

    def build_extension(self, ext):
        target = Path(self.get_ext_fullpath(ext.name))
        module = ext.name.rsplit(".", 1)[-1]
        cached = EXT_CACHE / f"{module}-{self._cache_key(ext)}{target.suffix}"
        if cached.exists():
            print(f"fastrec: {ext.name} is built already: {cached}", file=sys.stderr)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, target)
            shutil.copymode(cached, target)
            return
        super().build_extension(ext)
        EXT_CACHE.mkdir(parents=True, exist_ok=True)
        for old in EXT_CACHE.glob(f"{module}-*"):
            old.unlink()
        partial = cached.with_name(cached.name + ".partial")
        shutil.copy2(target, partial)
        os.replace(partial, cached)

    def _cache_key(self, ext) -> str:
        digest = hashlib.sha256()
        headers = [p for d in (CSRC / "include", HERE / CYTHON_DIR) for p in d.rglob("*")
                   if p.suffix in (".h", ".pxd")]
        for path in sorted({*headers, *(HERE / s for s in ext.sources)}):
            # Cython's metadata comment names NumPy's include directory, which lies in pip's
            # throwaway build environment (/tmp/pip-build-env-<random>/...): a new path in every
            # build, so the key would never match; NumPy's version stands for its headers below.
            text = CYTHON_METADATA.sub(b"", path.read_bytes())
            digest.update(str(path.relative_to(HERE)).encode() + b"\0" + text)
        include_dirs = [f"numpy {np.__version__}" if d == np.get_include() else d
                        for d in ext.include_dirs]
        compiler = self.compiler.compiler_so
        version = subprocess.run([compiler[0], "--version"], capture_output=True,
                                 text=True).stdout
        digest.update(repr((ext.extra_compile_args, ext.extra_link_args, ext.define_macros,
                            include_dirs, compiler, self.compiler.linker_so, version,
                            sys.version, sysconfig.get_platform())).encode())
        return digest.hexdigest()[:20]


setup(ext_modules=extensions(),
      cmdclass={"build_py": BuildPyWithCsrc, "build_ext": ParallelBuildExt})
