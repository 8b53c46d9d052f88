"""The example scripts run as a user runs them: in a subprocess, from the command line."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(*args, timeout=120):
    result = subprocess.run([sys.executable, str(EXAMPLES / "train_mlp.py"), *args], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def final_accuracy(stdout):
    match = re.search(r"^test accuracy (\d\.\d+) after (\d+) epochs", stdout, re.MULTILINE)
    assert match, stdout
    return float(match.group(1)), int(match.group(2))


def test_train_mlp_reaches_the_stated_accuracy_with_epoch_lines_and_progress_bar():
    # 5 epochs reach the 95% the example's docstring states (the defaults, 30 epochs, reach 98%)
    result = run_example("--epochs", "5", "--seed", "0", "--batch-size", "32")
    out = result.stdout
    epochs = re.findall(
        r"^epoch +(\d+)/5  loss (\d+\.\d+)  train acc (\d\.\d+)  test acc (\d\.\d+)  time +\d+\.\d ms  "
        r"loss +(\d+\.\d)% of the epoch$", out, re.MULTILINE)
    assert [int(e[0]) for e in epochs] == [1, 2, 3, 4, 5], out
    losses = [float(e[1]) for e in epochs]
    assert losses[-1] < losses[0] < 2.0, out  # it learns (the first epoch starts near log(5) = 1.6)
    assert all(0.0 < float(e[4]) < 100.0 for e in epochs), out
    accuracy, n = final_accuracy(out)
    assert n == 5 and accuracy >= 0.95, out
    assert float(epochs[-1][3]) == accuracy
    assert re.search(r"the loss took \d+\.\d% of the training time", out), out
    assert "warm-up" in out
    assert "epoch 5/5 [" in result.stderr and "] 75/75 batches" in result.stderr  # the progress bar


def test_train_mlp_quiet_prints_only_the_summary(capsys):
    # in-process (the subprocess run above covers the script as a user runs it)
    spec = importlib.util.spec_from_file_location("train_mlp", EXAMPLES / "train_mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--epochs", "1", "--seed", "3", "--batch-size", "256", "--quiet"])
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 1, captured.out
    accuracy, n = final_accuracy(captured.out)
    assert n == 1 and 0.0 <= accuracy <= 1.0
