"""The JIT tax: no crash without a writable cache, and ``numloss warmup`` fills the cache every call reads.

Each case runs in a fresh interpreter (``subprocess``): Numba decides where its
disk cache goes when the kernels are decorated, once per process.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numloss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CALL = """
import warnings, numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import numloss
    x = np.array([[2.0, 1.0, 0.1], [0.0, 0.5, -1.0]])
    loss = numloss.softmax_cross_entropy(x, np.array([0, 2]))
from numloss._kernels import _jit
print("LOSS", repr(float(loss)))
print("CACHE", repr(_jit.cache_location()))
print("WARNINGS", [(w.category.__name__, str(w.message)) for w in caught])
"""


def _read_only_install(tmp):
    """A copy of the package where no cache directory can be made, and such a home.

    Read-only permissions alone do not stop root (CI runs as root), so every
    directory Numba would create is blocked by a plain file of that name as
    well: the package's ``_kernels/__pycache__``, and the home (a file), so
    ``~/.cache/numba`` cannot exist either.
    """
    site = os.path.join(tmp, "site")
    shutil.copytree(os.path.join(REPO, "numloss"), os.path.join(site, "numloss"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for root, _, _ in os.walk(os.path.join(site, "numloss")):
        open(os.path.join(root, "__pycache__"), "w").close()
    home = os.path.join(tmp, "home-is-a-file")
    open(home, "w").close()
    for root, dirs, files in os.walk(site):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    return site, home


def _run_without_a_writable_cache(tmp, block_fallback):
    """Call a loss in a fresh process on the read-only install; ``(loss, cache location, warnings)``."""
    site, home = _read_only_install(str(tmp))
    tmpdir = os.path.join(str(tmp), "tmp")
    os.makedirs(tmpdir)
    if block_fallback:  # the private fallback directory cannot be made either
        open(os.path.join(tmpdir, f"numloss-numba-cache-{os.getuid()}"), "w").close()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME=home, PYTHONPATH=site, PYTHONDONTWRITEBYTECODE="1", TMPDIR=tmpdir)
    try:
        proc = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, timeout=600, env=env,
                              cwd=tmpdir)
    finally:
        for root, _, _ in os.walk(site):
            os.chmod(root, 0o755)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    return float(eval(lines["LOSS"])), eval(lines["CACHE"]), eval(lines["WARNINGS"]), tmpdir


def _reference_loss():
    x = np.array([[2.0, 1.0, 0.1], [0.0, 0.5, -1.0]])
    lse = np.log(np.exp(x).sum(axis=1))
    return float(np.mean(lse - x[[0, 1], [0, 2]]))


def test_read_only_install_without_writable_home_caches_in_a_private_temporary_directory(tmp_path):
    loss, cache, warnings, tmpdir = _run_without_a_writable_cache(tmp_path, block_fallback=False)
    assert loss == pytest.approx(_reference_loss(), rel=1e-12)
    assert cache is not None and cache.startswith(os.path.join(tmpdir, "numloss-numba-cache-")), cache
    assert [c for c, _ in warnings] == ["CacheWarning"], warnings
    assert "NUMBA_CACHE_DIR" in warnings[0][1]


def test_nothing_writable_at_all_compiles_without_a_disk_cache(tmp_path):
    loss, cache, warnings, _ = _run_without_a_writable_cache(tmp_path, block_fallback=True)
    assert loss == pytest.approx(_reference_loss(), rel=1e-12)
    assert cache is None
    assert [c for c, _ in warnings] == ["CacheWarning"], warnings
    assert "NUMBA_CACHE_DIR" in warnings[0][1] and "compile in every new process" in warnings[0][1]


def test_warmup_leaves_nothing_to_compile_in_a_fresh_process():
    """After the session's warmup (conftest), a new process making every call of the warmup loads them all."""
    script = textwrap.dedent("""
        import numloss
        report = numloss.warmup(jobs=1)
        print("COMPILED", report.compiled, "LOADED", report.loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    words = proc.stdout.split()
    compiled, loaded = int(words[words.index("COMPILED") + 1]), int(words[words.index("LOADED") + 1])
    assert compiled == 0 and loaded > 0, proc.stdout


def test_warmup_report_and_arguments():
    # in a fresh process: in this one, earlier tests may have loaded every kernel already (nothing left to count)
    script = textwrap.dedent("""
        import numloss
        report = numloss.warmup(["softmax_cross_entropy"], ["float32"], jobs=1)
        text = "numloss warmup" in str(report)
        print("TASKS", report.tasks, "COUNTED", report.compiled + report.loaded, "TEXT", text)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    words = proc.stdout.split()
    assert int(words[words.index("TASKS") + 1]) == len(numloss._registry.BY_NAME["softmax_cross_entropy"].routes)
    assert int(words[words.index("COUNTED") + 1]) > 0 and words[words.index("TEXT") + 1] == "True"
    with pytest.raises(ValueError, match="dtypes must be among"):
        numloss.warmup(dtypes=["bfloat16"], jobs=1)  # (float16 warms the drivers bfloat16 shares)
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        numloss.warmup(jobs=0)
    with pytest.raises(KeyError):
        numloss.warmup(["no_such_loss"], jobs=1)


def test_command_line_help_version_and_info():
    for args, expect in ((["--help"], "warmup"), (["--version"], numloss.__version__),
                         (["warmup", "--help"], "NUMBA_CACHE_DIR"), (["bench", "--help"], "% of the bound"),
                         (["check", "--help"], "finite differences"), (["info"], "threading_layer")):
        proc = subprocess.run([sys.executable, "-m", "numloss", *args], capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        assert proc.returncode == 0 and expect in proc.stdout, (args, proc.stdout, proc.stderr)
        assert "%%" not in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "numloss", "info", "--json"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    facts = json.loads(proc.stdout)
    assert facts["numloss"] == numloss.__version__ and facts["numba_threads"] >= 1
    assert facts["kernel_cache_writable"] in (True, False)
    for args in ([], ["no-such-command"], ["warmup", "--losses", "no_such_loss"]):  # usage errors: status 2
        proc = subprocess.run([sys.executable, "-m", "numloss", *args], capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        assert proc.returncode == 2 and proc.stderr, (args, proc.stdout, proc.stderr)


def test_warmup_with_worker_processes_from_a_script_without_a_main_guard(tmp_path):
    """A top-level ``numloss.warmup()`` in a script (no ``if __name__ == "__main__"``) must not re-run the script."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numloss
        print("SCRIPT RUNS")
        report = numloss.warmup(["softmax_focal_loss", "cosface_cross_entropy"], ["float32"], jobs=2)
        print("JOBS", report.jobs, "TASKS", report.tasks, "COMPILED", report.compiled, "LOADED", report.loaded)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("SCRIPT RUNS") == 1, proc.stdout
    assert "JOBS 2 TASKS 2 COMPILED 0" in proc.stdout, proc.stdout
