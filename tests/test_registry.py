"""The registry (``numloss._registry``) says what the code does: names, options, defaults, references.

Every place that enumerates losses reads the registry; these tests hold the
registry to the functions themselves, so a record cannot drift from its loss.
"""

import importlib
import inspect
import subprocess
import sys

import pytest
import reference

import numloss
import numloss.dask
from numloss import _bench, _check, _registry

LOSSES = _registry.LOSSES
COMMON = {"reduction", "normalizer", "out", "sample_weight", "where", "aux"}


@pytest.mark.parametrize("loss", LOSSES, ids=[loss.name for loss in LOSSES])
def test_record_matches_the_public_functions_signatures(loss):
    module = importlib.import_module(f"numloss.{loss.module}")
    for name in (loss.name, loss.with_grad):
        fn = getattr(module, name)
        assert getattr(numloss, name) is fn
        params = inspect.signature(fn).parameters
        keyword = {k: p.default for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert {k: v for k, v in keyword.items() if k not in COMMON} == dict(loss.options), name
        assert ("normalizer" in keyword) == loss.normalizer, name
        assert keyword["sample_weight"] is None and keyword["where"] is None, name
        assert keyword.get("aux", None) is (False if loss.aux else None), name
        assert keyword["reduction"] == "mean"
        assert next(iter(params)) == loss.input, name
    assert ("out" in inspect.signature(getattr(module, loss.with_grad)).parameters) == (loss.input != "hidden")


@pytest.mark.parametrize("loss", LOSSES, ids=[loss.name for loss in LOSSES])
def test_every_loss_has_a_reference_bench_cases_and_self_test(loss):
    assert callable(getattr(reference, loss.name))
    assert any(case.family == loss.name for case in _bench.CASES) or loss.input == "hidden"
    assert loss.name in {name for _, name, _ in _check.CHECKS} or loss.input == "hidden"
    if loss.input != "hidden":  # the fused linear CE has no dask form (its weight is not a batch array)
        assert callable(getattr(numloss.dask, loss.name)) and callable(getattr(numloss.dask, loss.with_grad))


def test_routes_refer_to_existing_routes_and_kernel_modules():
    for loss in LOSSES:
        importlib.import_module(f"numloss._kernels.{loss.kernels}")
        for route in loss.routes:
            assert route.target in loss.targets or route.target == "dense"
            if route.after is not None:
                other, index = route.after
                assert index < len(_registry.BY_NAME[other].routes)


def test_public_names_come_from_the_registry_and_import_nothing_heavy():
    assert set(_registry.public_names()) <= set(numloss.__all__)
    script = "import sys, numloss, numloss._registry; print('numpy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
