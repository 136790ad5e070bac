"""No kernel reads through the non-coherent read-only path (``ld.global.nc``, i.e.
``LDG.E.CONSTANT``) a buffer that the same kernel writes.

``ld.global.nc`` goes through a cache that is not kept coherent with the kernel's own stores: a
warp can read a stale line that a neighbouring warp's read left in L1 after another warp wrote
it. The compiler emits it for loads it proves read-only, usually from a ``const T
*__restrict__`` parameter; a pointer that may be either such a parameter or a written one (NMF
KL's ``weights = beta == 2 ? data : ratios``) can still compile to it. The emulator runs blocks
one after another and cannot see this, so this test reads the PTX that NVRTC makes from every
kernel with the loader's options: a flow-insensitive taint analysis maps each register to the
kernel parameters its value derives from (``ld.param`` seeds, every arithmetic, move, convert
and select propagates; a value loaded from memory is data and starts clean), and each
``ld.global.nc`` address must derive from no parameter in the kernel's list of written
parameters: the non-const pointer parameters of its signature in the ``.cu`` file. Every store
or atomic in the PTX must derive from a parameter of that list, which checks the list and the
mapping of PTX parameters to source parameters. Needs CuPy and NVRTC, not a GPU.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pytest

from fastrec.backends.cuda import _loader
from tests.cuda.test_compile import _nvrtc_program_class

# The read-only decision is made before code generation for an architecture (the review
# found the same loads at sm_75 and sm_90), so one architecture keeps the test fast.
ARCH = "90"

_ENTRY = re.compile(r"\.entry\s+(\w+)\s*\((.*?)\)\s*\{(.*?)\n\}", re.S)
_PARAM_NAME = re.compile(r"\.param\s+[^\n,]*?(\w+_param_(\d+))")
_REGISTER = re.compile(r"%[a-z]+\d+")
_PARAM_LOAD = re.compile(r"ld\.param\.\w+\s+(%\w+),\s*\[(\w+_param_(\d+))(?:\+\d+)?\]")
_ADDRESS = re.compile(r"\[([^\]]+)\]")
# Stores and atomics to global (or generic) memory; shared, local and param spaces do not count.
_WRITE = re.compile(r"^(st|atom|red)(\.global)?\.(?!shared|local|param)")
# A loaded value is data, not an address derived from a parameter; stores, branches and barriers
# define no register that could hold one.
_NO_POINTER_RESULT = ("ld.", "ldu.", "st.", "atom.", "red.", "bra", "bar.", "ret", "membar",
                      "fence", "tex.")


@dataclass(frozen=True)
class KernelSignature:
    params: tuple[str, ...]  # names in declaration order
    pointers: frozenset[str]
    written: frozenset[str]  # non-const pointer parameters


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def source_signatures(source: str) -> dict[str, KernelSignature]:
    """Every ``__global__`` kernel of a .cu source: parameter names, and the non-const pointers
    (``T *x`` is written or may be; ``const T *x`` is not)."""
    out = {}
    for match in re.finditer(r"__global__\s+void\s+(\w+)\s*\(", source):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        params = _split_top_level(re.sub(r"//[^\n]*", "", source[match.end():end - 1]))
        names, pointers, written = [], set(), set()
        for param in params:
            name = re.findall(r"\w+", param)[-1]
            names.append(name)
            if "*" in param:
                pointers.add(name)
                if not param.startswith("const"):
                    written.add(name)
        out[match.group(1)] = KernelSignature(tuple(names), frozenset(pointers),
                                              frozenset(written))
    return out


@dataclass(frozen=True)
class Access:
    line: str
    params: frozenset[int]  # indices of the parameters the address derives from


def _taint(instructions: list[str]) -> dict[str, set[int]]:
    """Register -> indices of the parameters its value may derive from (a flow-insensitive fixed
    point over the whole body, so values carried around loops are covered)."""
    taint: dict[str, set[int]] = {}
    changed = True
    while changed:
        changed = False
        for ins in instructions:
            opcode, _, operands = ins.rstrip(";").partition(" ")
            param = _PARAM_LOAD.match(ins)
            if param:
                sources, targets = {int(param.group(3))}, [param.group(1)]
            elif opcode.startswith(_NO_POINTER_RESULT):
                continue
            else:
                fields = _split_top_level(operands)
                if len(fields) < 2:
                    continue
                targets = _REGISTER.findall(fields[0])
                sources = set().union(*(taint.get(r, set())
                                        for f in fields[1:] for r in _REGISTER.findall(f)))
            for reg in targets:
                before = taint.setdefault(reg, set())
                if not sources <= before:
                    before |= sources
                    changed = True
    return taint


def _address_params(ins: str, taint: dict[str, set[int]]) -> frozenset[int]:
    regs = _REGISTER.findall(_ADDRESS.search(ins).group(1))
    return frozenset().union(*(taint.get(r, set()) for r in regs))


def ptx_accesses(ptx: str) -> dict[str, tuple[int, list[Access], list[Access]]]:
    """Per entry (mangled name): (number of parameters, its ``ld.global.nc`` loads, its global
    stores and atomics), each with the parameters its address derives from."""
    out = {}
    for entry, header, body in _ENTRY.findall(ptx):
        lines = (line.strip() for line in body.splitlines())
        instructions = [re.sub(r"^@!?%p\d+\s+", "", s) for s in lines
                        if s and not s.startswith((".", "$", "//", "{", "}"))]
        taint = _taint(instructions)
        loads = [Access(ins, _address_params(ins, taint)) for ins in instructions
                 if ins.startswith("ld.global.nc")]
        writes = [Access(ins, _address_params(ins, taint)) for ins in instructions
                  if _WRITE.match(ins)]
        out[entry] = (len(_PARAM_NAME.findall(header)), loads, writes)
    return out


def kernel_name(expression: str) -> str:
    """``fastrec::cuda::nmf_full_rows<float, int>`` -> ``nmf_full_rows``."""
    return expression.split("<")[0].rsplit("::", 1)[-1]


@functools.cache
def compile_ptx(source: str, expressions: tuple[str, ...],
                arch: str) -> tuple[str, dict[str, str]]:
    program_class = _nvrtc_program_class(arch)
    program = program_class(source, "kernels.cu", name_expressions=list(expressions),
                            method="ptx")
    ptx, mapping = program.compile((*_loader.compile_options(), *_loader.CUPY_RUNTIME_OPTIONS,
                                    f"-arch=sm_{arch}"))
    return ptx.decode() if isinstance(ptx, bytes) else ptx, mapping


def readonly_violations(source: str, expressions: tuple[str, ...], arch: str) -> list[str]:
    """What breaks the rule in ``source``'s kernels ``expressions``: an ``ld.global.nc`` from a
    written parameter, a store through a parameter not in the written list, or an entry whose
    parameter count does not match its signature."""
    signatures = source_signatures(source)
    ptx, mapping = compile_ptx(source, expressions, arch)
    accesses = ptx_accesses(ptx)
    problems = []
    for expression in expressions:
        name = kernel_name(expression)
        signature = signatures[name]
        n_params, loads, writes = accesses[mapping[expression]]
        if n_params != len(signature.params):
            problems.append(f"{expression}: {n_params} PTX parameters, "
                            f"{len(signature.params)} in the source")
            continue
        for load in loads:
            hazards = sorted(signature.params[p] for p in load.params
                             if signature.params[p] in signature.written)
            if hazards:
                problems.append(f"{expression} (sm_{arch}): `{load.line}` reads through the "
                                f"read-only cache from written parameter(s) {hazards}")
        for write in writes:
            through = {signature.params[p] for p in write.params} & signature.pointers
            if not through or not through <= signature.written:
                problems.append(f"{expression} (sm_{arch}): `{write.line}` writes through "
                                f"{sorted(through)}, not only written parameters")
    return problems


@pytest.mark.parametrize("source", sorted(_loader.NAME_EXPRESSIONS))
def test_no_readonly_load_of_a_written_buffer(source):
    problems = readonly_violations(_loader.kernel_source(source),
                                   _loader.NAME_EXPRESSIONS[source], ARCH)
    assert not problems, "\n".join(problems)


def test_every_kernel_has_nc_loads_to_check():
    """The analysis sees the read-only loads it guards (an empty list would pass vacuously)."""
    source = _loader.kernel_source("nmf")
    expressions = _loader.NAME_EXPRESSIONS["nmf"]
    ptx, mapping = compile_ptx(source, expressions, ARCH)
    signature = source_signatures(source)["nmf_full_rows"]
    _, loads, writes = ptx_accesses(ptx)[mapping["fastrec::cuda::nmf_full_rows<float, int>"]]

    def pointers(accesses):
        return {signature.params[p] for a in accesses for p in a.params} & signature.pointers

    assert pointers(loads) == {"indptr", "indices", "other", "den"}
    assert pointers(writes) == {"factors", "ratios"}


def test_restrict_on_nmf_data_is_caught():
    """Putting ``__restrict__`` back on ``data`` in ``nmf_full_rows`` (the issue's hazard)
    makes the check fail, naming the KL ratios read through ``ld.global.nc``."""
    source = _loader.kernel_source("nmf")
    declaration = "const T *data, T *factors"
    assert source.count(declaration) == 1
    hazardous = source.replace(declaration, "const T *__restrict__ data, T *factors")
    expressions = tuple(e for e in _loader.NAME_EXPRESSIONS["nmf"] if "nmf_full_rows" in e)
    problems = readonly_violations(hazardous, expressions, ARCH)
    assert {p.split(" (sm_")[0] for p in problems} == set(expressions)
    assert all("ld.global.nc" in p and "['ratios']" in p for p in problems)
