"""``nado bench [--quick] [--only SECTION] [--out FILE.json]``."""
from __future__ import annotations

import json
import platform
import time


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and memory targets (one JSON object per section)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--only", action="append", metavar="SECTION", help="run only these sections")
    p.add_argument("--out", metavar="FILE.json", help="write the results here")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...bench import sections
    from ...errors import ConfigError
    available = sections()
    wanted = args.only or sorted(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ConfigError(f"unknown bench section(s) {unknown}; choose from {sorted(available)}")
    results: dict = {"meta": {"quick": args.quick, "python": platform.python_version(),
                              "machine": platform.machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}}
    for name in wanted:
        print(f"== {name}", flush=True)
        section = available[name](args.quick)
        results[name] = section
        for key, t in section.get("targets", {}).items():
            mark = "met" if t["met"] else "MISSED"
            print(f"  {key:40s} {t['value']:>12.4g}  target {t['target']:>10s}  {mark}")
    if args.out:
        from ...io import write_json_atomic
        write_json_atomic(args.out, results)
        print(f"wrote {args.out}")
    return 0
