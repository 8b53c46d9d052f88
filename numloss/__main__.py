"""The ``numloss`` command line: ``bench``, ``check``, ``warmup`` and ``info`` (argparse subcommands)."""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast


def _fmt(v: object, spec: str) -> str:
    return format(v, spec) if v is not None else "-"


def _print_table(rows: list[dict[str, Any]], file: TextIO) -> None:
    """The logits rows; ``/f32`` is a half-precision row's time over the same case's float32 time."""
    float32 = {r["case"].rsplit(" ", 1)[0]: r["out_ms"] for r in rows if r["case"].endswith(" float32")}
    head = (f"{'case':<52} {'out ms':>8} {'GB/s':>6} {'%bnd':>5} {'inpl ms':>8} {'GB/s':>6} {'%bnd':>5} "
            f"{'bound ms':>8} {'numpy':>7} {'torch':>7} {'jax':>7} {'x np':>6} {'x torch':>7} {'x jax':>6} "
            f"{'/f32':>5}")
    print(head, file=file)
    print("-" * len(head), file=file)
    for r in rows:
        base, dtype = r["case"].rsplit(" ", 1)
        vs32 = r["out_ms"] / float32[base] if dtype in ("float16", "bfloat16") and base in float32 else None
        print(
            f"{r['case']:<52} {r['out_ms']:>8.2f} {r['out_GBps']:>6.1f} {r['out_pct_bound']:>5.0f} "
            f"{r['inplace_ms']:>8.2f} {r['inplace_GBps']:>6.1f} {r['inplace_pct_bound']:>5.0f} "
            f"{r['bound_ms']:>8.2f} {_fmt(r.get('numpy_ms'), '7.1f'):>7} {_fmt(r.get('torch_ms'), '7.2f'):>7} "
            f"{_fmt(r.get('jax_ms'), '7.2f'):>7} {_fmt(r.get('x_numpy'), '6.1f'):>6} "
            f"{_fmt(r.get('x_torch'), '7.2f'):>7} {_fmt(r.get('x_jax'), '6.2f'):>6} {_fmt(vs32, '5.2f'):>5}",
            file=file,
        )


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Throughput of every loss over representative shapes: wall time (minimum over repeats), effective "
        "bandwidth (logits read + gradient written [+ dense targets read]) and % of the bound set by a plain "
        "streaming kernel on the same bytes, with out= preallocated and in place (out=logits); beside them the "
        "NumPy baseline and, where installed, PyTorch and JAX (x = their time / ours). Every contender runs in "
        "a fresh process of its own, pinned to the same THREADS cores with its thread pools set to THREADS, "
        "and the processes are interleaved over ROUNDS rounds; the table shows the minimum over rounds, the "
        "JSON the minimum and the median.")
    parser.add_argument("--quick", action="store_true", help="a few small cases only")
    parser.add_argument("--json", action="store_true", help="print the environment and rows as JSON on stdout")
    parser.add_argument("--output", metavar="FILE", help="also write the environment and rows as JSON to FILE")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads (and pinned cores) for every contender (default: the cores available)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per contender, interleaved")
    parser.add_argument("--filter", default="", help="only cases whose label contains this text")
    parser.add_argument("--no-peers", action="store_true", help="numloss only (no NumPy/PyTorch/JAX)")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per process (minimum kept)")
    parser.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                        help="compare two --output files (no timing): NEW / OLD per row and contender")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="with --compare: flag changes beyond this fraction (default: %(default)s)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw every contender's time and the streaming bound per case (needs matplotlib: "
                             "the plot extra)")
    parser.add_argument("--from-json", metavar="REPORT.json",
                        help="with --plot: draw this --output file instead of running the bench")


def bench(args: argparse.Namespace) -> int:
    import os

    if args.compare:
        from . import _bench

        with open(args.compare[0]) as f_old, open(args.compare[1]) as f_new:
            old, new = json.load(f_old), json.load(f_new)
        print(_bench.compare_reports(old, new, args.threshold))
        return 0

    from . import _bench

    if args.from_json:
        if not args.plot:
            raise SystemExit("numloss bench: --from-json needs --plot FILE")
        with open(args.from_json) as f:
            print(_bench.plot_report(json.load(f), args.plot))
        return 0
    threads = args.threads or len(os.sched_getaffinity(0))
    cases = [c for c in _bench.CASES if (c.quick or not args.quick) and args.filter in c.label]
    linear = [c for c in _bench.LINEAR_CASES if (c.quick or not args.quick) and args.filter in c.label]
    contenders = ("numloss",) if args.no_peers else _bench.installed_contenders()
    progress = sys.stderr
    print(f"numloss bench: {len(cases) + len(linear)} cases x {', '.join(contenders)}, {threads} thread(s), "
          f"{args.rounds} round(s) of one fresh process per contender", file=progress)
    print("(each process's first call of a case compiles its kernels, or loads them from Numba's disk cache: "
          "untimed; `numloss warmup` compiles them all ahead, in parallel)", file=progress)
    rows, linear_rows, env = _bench.run_rounds(cases, linear, threads, rounds=args.rounds, repeat=args.repeat,
                                               contenders=contenders, progress=progress)
    interop: dict[str, dict[str, float]] | None = None
    if "torch" in contenders and not args.quick and args.filter in "interop":
        print("interop: a NumPy matmul, a PyTorch cross-entropy and numloss alternating in one process "
              f"({args.rounds} processes)", file=progress)
        interop = {"default environment": _bench.run_interop(threads, rounds=args.rounds),
                   "OMP_WAIT_POLICY=PASSIVE": _bench.run_interop(
                       threads, rounds=args.rounds, env=dict(_bench.thread_env(threads), OMP_WAIT_POLICY="PASSIVE"))}
    report = {"environment": env, "rows": rows, "linear_rows": linear_rows, "interop": interop}
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        print(f"plot: {_bench.plot_report(report, args.plot)}", file=progress)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(_bench.format_environment(env))
        if rows:
            _print_table(rows, sys.stdout)
        _bench.print_linear_table(linear_rows, sys.stdout)
        for setting, row in (interop or {}).items():
            _bench.print_interop(row, setting, sys.stdout)
    return 0


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Self-test: every gradient against central finite differences (float64) and every loss against the "
        "NumPy baseline on random inputs, for float32 and float64.")
    parser.add_argument("--seed", type=int, default=0)


def check(args: argparse.Namespace) -> int:
    from ._check import run_checks

    failures = run_checks(seed=args.seed, out=sys.stdout)
    print("numloss check:", "all passed" if not failures else f"{failures} FAILED")
    return 1 if failures else 0


def _warmup_arguments(parser: argparse.ArgumentParser) -> None:
    from . import _registry

    parser.description = (
        "Compile (or load from Numba's disk cache) every kernel of every loss: serial and parallel, out of place "
        "and in place, for each dtype, in parallel worker processes. Run it once where the cache will be read: "
        "at a Docker image's build (with a fixed NUMBA_CACHE_DIR), on each cluster worker, before a CI test run.")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: the cores available)")
    parser.add_argument("--dtypes", default=",".join(_registry.WARMUP_DTYPES),
                        help="comma-separated logits dtypes (default: %(default)s)")
    parser.add_argument("--losses", default="", help="comma-separated loss names (default: all: "
                        + ", ".join(loss.name for loss in _registry.LOSSES) + ")")


def warmup(args: argparse.Namespace) -> int:
    from . import _registry

    losses = [name for name in args.losses.split(",") if name] or None
    for name in losses or ():
        if name not in _registry.BY_NAME:
            print(f"numloss warmup: unknown loss {name!r}; choose from {', '.join(_registry.BY_NAME)}",
                  file=sys.stderr)
            return 2
    from ._warmup import warmup as run

    report = run(losses, [d for d in args.dtypes.split(",") if d], jobs=args.jobs, progress=sys.stderr)
    print(report)
    return 0


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "What numloss runs on here: versions, the CPU and its vector features, Numba's threading layer, the "
        "BLAS and which path the fused linear CE takes, the kernel cache. Paste it into a bug report.")
    parser.add_argument("--json", action="store_true", help="as JSON")


def info(args: argparse.Namespace) -> int:
    from . import _info

    facts = _info.collect()
    if args.json:
        json.dump(facts, sys.stdout, indent=1)
        print()
    else:
        print(_info.format_facts(facts))
    return 0


#: name -> (one-line help, add its arguments, run it)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "bench": ("throughput of every loss against NumPy, PyTorch and JAX", _bench_arguments, bench),
    "check": ("self-test against finite differences and the NumPy baseline", _check_arguments, check),
    "warmup": ("compile every kernel ahead of time (fills Numba's disk cache)", _warmup_arguments, warmup),
    "info": ("versions, CPU, threading layer, BLAS and cache: for bug reports", _info_arguments, info),
}


def parser() -> argparse.ArgumentParser:
    """The ``numloss`` argument parser: one subcommand per entry of :data:`COMMANDS`."""
    from . import __version__

    top = argparse.ArgumentParser(prog="numloss", description="Fused classification losses for NumPy on the CPU.")
    top.add_argument("--version", action="version", version=f"numloss {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=summary)
        add_arguments(command)
        command.set_defaults(run=run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        top.print_usage(sys.stderr)
        print("numloss: a COMMAND is needed (numloss --help lists them)", file=sys.stderr)
        return 2
    return cast(int, args.run(args))  # run: a function of COMMANDS (set_defaults above)


if __name__ == "__main__":
    sys.exit(main())
