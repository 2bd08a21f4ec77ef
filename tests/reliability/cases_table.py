"""Turn the observations recorded by a run of the reliability suite into the table of docs/reliability-cases.md.

    INRSR_RELIABILITY_SRC=/tmp/inrsr-before INRSR_RELIABILITY_RECORD=/tmp/before.jsonl \\
        python -m pytest -q tests/reliability
    python tests/reliability/cases_table.py /tmp/before.jsonl [more.jsonl ...] [--now /tmp/now.jsonl ...] > table.md

One row per case: whether it passed on the recorded code and what that code did (exit status,
first stderr line, traceback, files left, peak RSS, wall time), what the case expects, and with
``--now`` whether the case passes on a second recorded run. With several files, a case recorded
in a later file replaces its record from an earlier one (a case re-run after it changed).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(*paths: str) -> tuple[dict, dict, dict, list[str]]:
    records, order = {}, []
    for path in paths:
        fresh = defaultdict(list)
        for line in Path(path).read_text().splitlines():
            rec = json.loads(line)
            fresh[rec["node"]].append(rec)
        for node, recs in fresh.items():
            if node not in order:
                order.append(node)
            records[node] = recs
    runs, expects, outcomes = defaultdict(list), {}, {}
    for node in order:
        for rec in records[node]:
            if rec["kind"] == "run":
                runs[node].append(rec)
            elif rec["kind"] == "expect":
                expects[node] = rec["text"]
            elif rec["kind"] == "outcome":
                outcomes[node] = rec["outcome"]
    return runs, expects, outcomes, order


def files_of_tests() -> dict[str, str]:
    owner = {}
    for f in sorted(HERE.glob("test_*.py")):
        for name in re.findall(r"^def (test_\w+)", f.read_text(), re.M):
            owner[name] = f.stem
    return owner


def status(rc, killed) -> str:
    if killed:
        return f"**killed by the harness** ({killed})"
    if rc is None:
        return "?"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"**died of {name}** (shell exit {128 - rc})"
    return f"exit {rc}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def describe(run: dict) -> str:
    parts = [status(run["rc"], run.get("killed"))]
    if run.get("label"):
        parts[0] = f"{run['label']}: {parts[0]}"
    first = run.get("first_stderr") or ""
    parts.append(f"`{first[:160]}{'…' if len(first) > 160 else ''}`" if first else "stderr empty")
    if run.get("traceback"):
        parts.append("**Traceback**")
    left = []
    for key, label in (("created", "+"), ("modified", "changed "), ("removed", "removed ")):
        items = [p for p in (run.get(key) or []) if key != "created" or "." in Path(p).name]
        if items:
            shown = ", ".join(items[:4]) + (f" (+{len(items) - 4})" if len(items) > 4 else "")
            left.append(f"{label}{shown}")
    if run.get("temps"):
        left.append(f"temp files {', '.join(run['temps'])}")
    parts.append("files: " + ("; ".join(left) if left else "none"))
    parts.append(f"{run.get('maxrss_mb', '?')} MiB, {run.get('wall_s', '?')} s")
    return " · ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before", nargs="+", help="JSON lines recorded on the code before the fixes")
    ap.add_argument("--now", action="append", help="JSON lines recorded on the current tree (adds a column with "
                    "what it did and whether the case passes; repeatable, a later file's cases replace an earlier one's)")
    args = ap.parse_args()
    runs, expects, outcomes, order = load(*args.before)
    now_runs, _, now, _ = load(*args.now) if args.now else ({}, {}, None, [])
    owner = files_of_tests()
    by_file = defaultdict(list)
    for node in order:
        by_file[owner.get(node.split("[", 1)[0], "?")].append(node)
    verdict = {"passed": "passes", "failed": "**FAILS**", "error": "**ERROR**", "skipped": "skipped"}
    for f in sorted(by_file):
        print(f"\n### {f}.py\n")
        print("| case | before | expected | after |" if now is not None else "| case | before | expected |")
        print("|---|---|---|" + ("---|" if now is not None else ""))
        for node in by_file[f]:
            before = "<br>".join(describe(r) for r in runs.get(node, [])) or "(no run)"
            if node in outcomes:
                before = f"{verdict.get(outcomes[node], outcomes[node])}: {before}"
            row = f"| `{cell(node)}` | {cell(before)} | {cell(expects.get(node, '?'))} |"
            if now is not None:
                seen = "<br>".join(describe(r) for r in now_runs.get(node, []))
                row += f" {verdict.get(now.get(node, '?'), now.get(node, '?'))}: {cell(seen)} |"
            print(row)


if __name__ == "__main__":
    main()
