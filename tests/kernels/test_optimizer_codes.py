"""The optimizer codes exist twice, once per language: ``OPTIMIZERS`` in
``fastrec/backends/_contract.py`` and ``enum OptimizerKind`` in ``csrc/include/fastrec/optim.h``.
They must agree, and nothing else may define them."""

from __future__ import annotations

import re
from pathlib import Path

from fastrec.backends._contract import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "csrc" / "include" / "fastrec" / "optim.h"


def header_codes(text: str) -> dict[str, int]:
    """{"adam": 0, ...} from ``enum OptimizerKind { OPT_ADAM = 0, ... };``."""
    body = re.search(r"enum\s+OptimizerKind\s*\{([^}]*)\}", text)
    assert body, "enum OptimizerKind not found in optim.h"
    enumerators = [e for e in body.group(1).split(",") if e.strip()]
    matches = [re.fullmatch(r"\s*OPT_(\w+)\s*=\s*(\d+)\s*", e) for e in enumerators]
    assert enumerators and all(matches), f"every code needs an explicit value: {body.group(1)}"
    return {m.group(1).lower(): int(m.group(2)) for m in matches}


def test_header_and_python_codes_agree():
    assert header_codes(HEADER.read_text()) == OPTIMIZERS


def test_the_parser_sees_a_changed_code():
    changed = HEADER.read_text().replace("OPT_SGD = 2", "OPT_SGD = 3")
    assert header_codes(changed) != OPTIMIZERS


def test_no_other_definition_of_the_codes():
    python = re.compile(r"^\s*OPT_\w+(\s*,\s*OPT_\w+)*\s*=", re.MULTILINE)
    native = re.compile(r"\bOPT(IM)?_(ADAM|ADAGRAD|SGD)\s*=")
    others = []
    for path in (ROOT / "fastrec").rglob("*.py"):
        if path.name != "_contract.py" and python.search(path.read_text()):
            others.append(path)
    for pattern in ("*.h", "*.cu", "*.pyx", "*.pxd"):
        for path in [*(ROOT / "csrc").rglob(pattern), *(ROOT / "fastrec").rglob(pattern)]:
            if path != HEADER and native.search(path.read_text()):
                others.append(path)
    assert not others, [str(p.relative_to(ROOT)) for p in others]
