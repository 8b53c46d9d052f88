"""``numloss bench``: contenders in processes of their own, on the thread count asked for; ``--compare``.

Nothing here asserts a speed (that is the bench's and asv's job): only that
the processes run, report the threads they were given, and that the JSON
and the comparison carry what they promise.
"""

import json
import subprocess
import sys
from pathlib import Path

from numloss import _bench

REPO = Path(__file__).resolve().parent.parent
CASE = "softmax_cross_entropy plain 4096x1000 float32"


def test_one_thread_run_writes_environment_rows_and_each_contenders_thread_count(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "numloss", "bench", "--quick", "--threads", "1", "--rounds", "1",
                           "--repeat", "1", "--filter", CASE, "--output", str(out), "--plot", str(tmp_path / "a.png")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    env = report["environment"]
    assert env["threads"] == 1 and env["numloss"] and env["cpu"]
    assert env["contenders"]["numloss"]["numba_threads"] == 1
    if "torch" in env["contenders"]:
        assert env["contenders"]["torch"]["torch_threads"] == 1
    (row,) = report["rows"]
    assert row["case"] == CASE and row["threads"] == 1 and row["rounds"] == 1
    for key in ("out_ms", "inplace_ms", "bound_ms", "out_ms_median"):
        assert row[key] > 0
    assert row["numpy_ms"] > 0 and row["x_numpy"] == row["numpy_ms"] / min(row["out_ms"], row["inplace_ms"])
    assert CASE in proc.stdout  # the table
    # --plot drew the run; --from-json draws the saved report the same size, without running anything
    replot = subprocess.run([sys.executable, "-m", "numloss", "bench", "--from-json", str(out), "--plot",
                             str(tmp_path / "b.png")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert replot.returncode == 0, replot.stderr
    import matplotlib.image

    first, second = (matplotlib.image.imread(tmp_path / name) for name in ("a.png", "b.png"))
    assert first.shape == second.shape and first.shape[0] > 100 and first.shape[1] > 1000
    assert (first[..., :3] < 0.5).any()  # something is drawn


def test_plot_refuses_an_empty_report_and_from_json_needs_plot(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="no rows"):
        _bench.plot_report({"rows": [], "linear_rows": []}, tmp_path / "x.png")
    proc = subprocess.run([sys.executable, "-m", "numloss", "bench", "--from-json", "r.json"], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode != 0 and "--from-json needs --plot" in proc.stderr


def test_compare_flags_changes_beyond_the_threshold_and_environment_differences():
    old = {"environment": {"cpu": "A", "threads": 2},
           "rows": [{"case": "c1", "out_ms": 10.0, "inplace_ms": 10.0}, {"case": "c2", "out_ms": 5.0}]}
    new = {"environment": {"cpu": "B", "threads": 2},
           "rows": [{"case": "c1", "out_ms": 12.0, "inplace_ms": 10.5}, {"case": "c3", "out_ms": 1.0}]}
    text = _bench.compare_reports(old, new, threshold=0.10)
    assert "environment differs: cpu 'A' -> 'B'" in text
    lines = {tuple(line.split()[:2]): line for line in text.splitlines() if line.startswith("c1")}
    assert lines[("c1", "out")].endswith("1.20  slower")
    assert lines[("c1", "inplace")].split()[-1] == "1.05"  # within 10 %: no flag
    assert "c3" in text and "(not in OLD)" in text
    assert text.endswith("1 change(s) beyond 10%")


def test_best_time_reports_long_calls_to_progress_and_keeps_the_minimum():
    heard = []
    calls = iter([0.0, 0.03, 0.01, 0.02])  # seconds each call sleeps: the warm-up, then three timed calls
    import time

    best = _bench.best_time(lambda: time.sleep(next(calls)), repeat=3, progress=heard.append, progress_after=0.015)
    assert 0.01 <= best < 0.015
    assert [h.split(":")[0] for h in heard] == ["call 1", "call 3"]  # the calls over 15 ms, numbered
    assert not any("warm-up" in h for h in heard)
