"""Run hangar's benchmark suite; write results JSON, a markdown table and a plot.

    python bench/run.py [--quick] [--only SCENARIO ...] [--peer | --no-peer] [--out bench/results]

Scenarios: overhead, batch, cold_start, throughput, startup_memory, peer, views. `--quick` takes
fewer samples and skips the peer unless `--peer` is given (full: the peer runs unless
`--no-peer`). Every number is measured in this run against a baseline measured in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from bench import (  # noqa: E402
    batch,
    cold_start,
    harness,
    overhead,
    peer,
    replicas,
    startup_memory,
    throughput,
    views,
)

SCENARIOS = {
    "overhead": overhead,
    "batch": batch,
    "cold_start": cold_start,
    "throughput": throughput,
    "startup_memory": startup_memory,
    "peer": peer,
    "views": views,
    "replicas": replicas,
}
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT_PNG = "latency_vs_concurrency.png"
DOCS_START = "<!-- bench:results:start -->"
DOCS_END = "<!-- bench:results:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (the smoke run, < 2 minutes)")
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), metavar="SCENARIO", help="run only these"
    )
    peer_group = parser.add_mutually_exclusive_group()
    peer_group.add_argument("--peer", dest="peer", action="store_true", default=None, help="run the peer")
    peer_group.add_argument("--no-peer", dest="peer", action="store_false", help="skip the peer")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="output directory")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: write results.md (and --update-docs) again from a results.json",
    )
    parser.add_argument(
        "--update-docs",
        type=Path,
        metavar="FILE",
        help=f"also put the results between the {DOCS_START} and {DOCS_END} lines of FILE",
    )
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    run_peer = args.peer if args.peer is not None else not args.quick
    ctx = harness.Context(quick=args.quick, out=args.out, peer=run_peer)
    started = time.monotonic()
    load_start = harness.loadavg()
    scenarios: dict[str, Any] = {}
    try:
        for name, module in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            load = harness.loadavg()
            try:
                result = await module.run(ctx)
            except Exception as exc:
                traceback.print_exc()
                reason = f"the scenario failed: {harness.describe_error(exc)}"
                result = {
                    "title": getattr(module, "TITLE", name),
                    "error": traceback.format_exc(limit=8),
                    "rows": [harness.not_available(name, reason)],
                }
            result["duration_s"] = round(time.monotonic() - t0, 1)
            result["loadavg"] = {"start": load, "end": harness.loadavg()}
            scenarios[name] = result
            print(f"[bench] {name} done in {result['duration_s']} s", file=sys.stderr, flush=True)
    finally:
        ctx.cleanup()
    return {
        "meta": {
            "date": harness.now_utc(),
            "commit": harness.git_commit(),
            "mode": "quick" if args.quick else "full",
            "duration_s": round(time.monotonic() - started, 1),
            "machine": harness.machine(),
            "loadavg_start": load_start,
            "loadavg_end": harness.loadavg(),
            "client": f"mcp SDK Client, mode={harness.CLIENT_MODE!r}",
            "leaks": ctx.leaks,
        },
        "scenarios": scenarios,
    }


def update_docs(path: Path, table: str) -> None:
    """Replace what is between the two marker lines of a document with the new results."""
    text = path.read_text()
    if DOCS_START not in text or DOCS_END not in text:
        print(f"[bench] {path} has no {DOCS_START} / {DOCS_END} lines: not updated", file=sys.stderr)
        return
    head, rest = text.split(DOCS_START, 1)
    _, tail = rest.split(DOCS_END, 1)
    path.write_text(f"{head}{DOCS_START}\n{table}\n{DOCS_END}{tail}")
    print(f"[bench] updated the results in {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    if args.render:
        results = json.loads(args.render.read_text())
        series = results["scenarios"].get("throughput", {}).get("series") or {}
        if series:
            harness.plot(args.out / PLOT_PNG, series)
        (args.out / RESULTS_MD).write_text(harness.markdown(results))
        if args.update_docs:
            update_docs(args.update_docs, harness.markdown(results, heading_level=3))
        return 0
    results = anyio.run(run_all, args)
    out: Path = args.out
    series = results["scenarios"].get("throughput", {}).get("series") or {}
    png = out / PLOT_PNG
    if series:
        renderer = harness.plot(png, series)
    else:
        harness.plot(png, {})
        renderer = "empty: the throughput scenario did not run"
    results["meta"]["plot"] = {"file": PLOT_PNG, "renderer": renderer}
    harness.write_json(out / RESULTS_JSON, results)
    (out / RESULTS_MD).write_text(harness.markdown(results))
    print((out / RESULTS_MD).read_text())
    if args.update_docs:
        update_docs(args.update_docs, harness.markdown(results, heading_level=3))
    print(f"[bench] wrote {out / RESULTS_JSON}, {out / RESULTS_MD}, {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
