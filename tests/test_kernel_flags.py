"""Every kernel gets its compiler options from numloss._kernels._jit, and those never include nnan/ninf.

A NaN logit must give a NaN loss; with the ``nnan``/``ninf`` fast-math flags
LLVM may assume no NaN or inf exists and fold it into a finite number, so the
flags are set in one place (``_jit.py``) and checked here: in the sources, in
the dispatchers, and in the LLVM IR the options produce.
"""

import ast
import importlib
import io
import pathlib
import re
import tokenize

import numba
import numpy as np
import pytest
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

import numloss._kernels as kernels_pkg
from numloss._kernels import _jit

KERNEL_DIR = pathlib.Path(kernels_pkg.__file__).parent
KERNEL_FILES = sorted(p for p in KERNEL_DIR.glob("*.py") if p.name != "_jit.py")
KERNEL_MODULES = [f"numloss._kernels.{p.stem}" for p in KERNEL_FILES if p.stem != "__init__"]

#: numba.njit/jit options a kernel module must not set itself
OWN_OPTIONS = {"fastmath", "parallel", "cache", "error_model", "nogil", "boundscheck", "nopython", "forceobj",
               "looplift"}
#: numba decorators that would compile with options of their own
DECORATORS = {"njit", "jit", "vectorize", "guvectorize", "cfunc", "generated_jit", "stencil", "jitclass"}
FORBIDDEN_FLAGS = {"nnan", "ninf", "fast", "afn"}


def test_kernel_files_found():
    names = {p.name for p in KERNEL_FILES}
    assert {"_math.py", "softmax.py", "sigmoid.py"} <= names


def _code_without_comments_and_strings(path):
    """The source with comments and string literals (docstrings included) blanked out."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        out.append(tok.string)
    return " ".join(out)


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_no_kernel_module_sets_its_own_options_grep(path):
    code = _code_without_comments_and_strings(path)
    assert not re.search(r"\bnjit\s*\(", code), f"{path.name} calls njit( itself; use _jit.jit/jit_inline/jit_parallel"
    assert not re.search(r"\bfastmath\s*=", code), f"{path.name} sets fastmath itself"
    assert not re.search(r"\bparallel\s*=", code), f"{path.name} sets parallel itself; use _jit.jit_parallel"
    assert not re.search(r"\bcache\s*=", code), f"{path.name} sets cache itself"
    assert not re.search(r"\bnumba\s*\.\s*(n?jit|vectorize|guvectorize|cfunc)\b", code), path.name


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_no_kernel_module_sets_its_own_options_ast(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "numba":
            for alias in node.names:
                if alias.name in DECORATORS:
                    problems.append(f"line {node.lineno}: imports {alias.name} from {node.module}")
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in OWN_OPTIONS:
                    problems.append(f"line {node.lineno}: passes {kw.arg}=")
                if kw.arg == "jit_options" and isinstance(kw.value, ast.Dict):
                    problems.append(f"line {node.lineno}: a literal jit_options dict")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FORBIDDEN_FLAGS:
            problems.append(f"line {node.lineno}: the string {node.value!r}")
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_fastmath_flags_exclude_nnan_and_ninf():
    flags = set(_jit.FASTMATH_FLAGS)
    assert not flags & FORBIDDEN_FLAGS, flags
    assert flags <= {"reassoc", "contract", "arcp", "nsz"}, flags
    assert _jit.JIT_OPTIONS["fastmath"] == flags
    assert _jit.JIT_OPTIONS["cache"] is True
    assert _jit.JIT_OPTIONS["error_model"] == "numpy"


def _dispatchers():
    for name in KERNEL_MODULES:
        mod = importlib.import_module(name)
        for attr, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and getattr(obj.py_func, "__module__", None) == name:
                yield f"{name}.{attr}", obj


def test_every_kernel_dispatcher_has_the_shared_options():
    found = list(_dispatchers())
    names = {n.rsplit(".", 1)[1] for n, _ in found}
    assert {"softmax_ce_int_serial", "softmax_ce_int_parallel", "sigmoid_ce_serial", "sigmoid_ce_parallel",
            "exp64", "exp32"} <= names, names
    for name, d in found:
        opts = d.targetoptions
        # cache=True is not kept in targetoptions: it gives the dispatcher a disk cache
        assert isinstance(d._cache, FunctionCache), (name, type(d._cache).__name__)
        for key in ("error_model", "nogil"):
            assert opts.get(key) == _jit.JIT_OPTIONS[key], (name, key, opts.get(key))
        assert set(opts.get("fastmath")) == set(_jit.FASTMATH_FLAGS), (name, opts.get("fastmath"))
        extra = set(opts) - set(_jit.JIT_OPTIONS) - {"parallel", "inline", "boundscheck", "nopython"}
        assert opts.get("boundscheck") in (None, False), name
        assert not extra, (name, extra)
        if "parallel" in opts:
            assert opts["parallel"] is True, name


def test_overload_options_come_from_jit_options():
    from numloss._kernels import _math, _rows

    assert _math.OVERLOAD_OPTIONS is _jit.OVERLOAD_OPTIONS and _rows.OVERLOAD_OPTIONS is _jit.OVERLOAD_OPTIONS
    assert set(_jit.OVERLOAD_OPTIONS) == {"fastmath", "error_model"}
    for key, value in _jit.OVERLOAD_OPTIONS.items():
        assert _jit.JIT_OPTIONS[key] == value, key


def test_generated_ir_has_no_nnan_or_ninf():
    """The options as LLVM sees them: floating-point instructions carry reassoc/nsz/... but never nnan/ninf."""
    from numloss._kernels._math import exp, log1p_unit

    opts = dict(_jit.JIT_OPTIONS, cache=False)

    @numba.njit(**opts)
    def probe(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += exp(x[i]) + log1p_unit(x[i] * 0.5) / (x[i] + 1.0)
        return s

    probe(np.zeros(3))
    ir = next(iter(probe.inspect_llvm().values()))
    fp_lines = [line for line in ir.splitlines() if re.search(r"= (fadd|fmul|fdiv|fsub|fcmp)\b", line)]
    assert fp_lines
    assert any("reassoc" in line for line in fp_lines), "the fast-math flags did not reach LLVM"
    bad = [line for line in fp_lines if re.search(r"\b(nnan|ninf|fast)\b", line)]
    assert not bad, bad[:5]
