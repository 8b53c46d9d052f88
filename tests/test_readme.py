"""Every ```python block of README.md and of the pages in docs/ runs as it is.

The blocks are found with a small CommonMark-style fence parser (``` or ~~~
fences, up to three spaces of indentation, info string ``python`` or ``py``)
and run in order, each in a fresh namespace (as a script: ``__name__ ==
"__main__"``) with the repository root as the working directory, under the
suite's warnings-as-errors.  A failure names the block's line in README.md,
and the traceback points at README.md's own line numbers.  Nothing is skipped:
a README without python blocks gives one passing case that says so.
"""

import os
import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
PYTHON_INFO = {"python", "py", "python3"}


def python_blocks(text):
    """``[(first_code_line, source)]`` of the python fenced blocks; raises ValueError on an unclosed fence."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = len(opening.group(1)), opening.group(2), opening.group(3).lower()
        start = i + 1
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = start
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if j == len(lines):
            raise ValueError(f"README.md line {i + 1}: the {fence} fence is never closed")
        if info in PYTHON_INFO:
            body = [line[min(indent, len(line) - len(line.lstrip(" "))):] for line in lines[start:j]]
            blocks.append((start + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _cases():
    cases = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        try:
            blocks = python_blocks(page.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            cases.append(pytest.param(page, None, exc, id=f"{name}-unreadable"))
            continue
        if not blocks:
            cases.append(pytest.param(page, None, None, id=f"{name}-no-python-blocks"))
        cases += [pytest.param(page, block, None, id=f"{name}:{block[0]}") for block in blocks]
    return cases


@pytest.mark.parametrize("page, block, error", _cases())
def test_readme_python_block_runs(page, block, error, monkeypatch):
    if error is not None:
        pytest.fail(f"cannot read the python blocks of {page}: {error}", pytrace=False)
    if block is None:
        return  # nothing to run (the README has no python blocks)
    line, source = block
    # padding: the block's lines keep their README.md line numbers in tracebacks
    code = compile("\n" * (line - 1) + source, str(page), "exec")
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "__main__", "__file__": str(page)}
    failure = None
    try:
        exec(code, namespace)
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(page)]
        where = f"line {frames[-1].lineno}" if frames else "its start"
        failure = (f"{page.name}: the python block starting at line {line} failed at {where}: "
                   f"{type(exc).__name__}: {exc}\n\n{''.join(traceback.format_exception(exc))}")
    if failure:
        pytest.fail(failure, pytrace=False)


def test_fence_parser_finds_python_blocks_and_their_lines():
    text = "\n".join([
        "# t",                   # 1
        "```bash",               # 2
        "echo no",               # 3
        "```",                   # 4
        "```python",             # 5
        "a = 1",                 # 6
        "````",                  # 7 closes (longer fence)
        "  ~~~py title",         # 8
        "  b = 2",               # 9
        "  ```",                 # 10 not a closing fence for ~~~
        "  ~~~",                 # 11
        "```pycon",              # 12
        ">>> 1",                 # 13
        "```",                   # 14
    ])
    assert python_blocks(text) == [(6, "a = 1\n"), (9, "b = 2\n```\n")]
    with pytest.raises(ValueError, match="line 2"):
        python_blocks("x\n```python\nopen\n")


def test_a_failing_block_is_reported_with_its_readme_line(tmp_path):
    # the same machinery on a throwaway README: the traceback carries README line numbers
    block = python_blocks("intro\n\n```python\nx = 1\nraise RuntimeError('boom')\n```\n")[0]
    assert block[0] == 4
    code = compile("\n" * (block[0] - 1) + block[1], "README.md", "exec")
    with pytest.raises(RuntimeError) as info:
        exec(code, {"__name__": "__main__"})
    assert traceback.extract_tb(info.value.__traceback__)[-1].lineno == 5
    assert os.path.basename(traceback.extract_tb(info.value.__traceback__)[-1].filename) == "README.md"
