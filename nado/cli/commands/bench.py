"""``nado bench [--quick] [--only SECTION] [--out FILE.json] [--device D]``.

``--device`` (auto, cpu, cuda, cuda:N; default cpu) is where the torch sections (``twin``,
``network``) compute; the others ignore it."""
from __future__ import annotations

import json
import platform
import time


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and memory targets (one JSON object per section)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--only", action="append", metavar="SECTION", help="run only these sections")
    p.add_argument("--out", metavar="FILE.json", help="write the results here")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="torch device of the twin and network sections: cpu (default), auto, cuda, cuda:N")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...bench import sections
    from ...device import resolve_device
    from ...errors import ConfigError
    device = resolve_device(args.device, "--device")
    available = sections()
    wanted = args.only or sorted(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ConfigError(f"unknown bench section(s) {unknown}; choose from {sorted(available)}")
    results: dict = {"meta": {"quick": args.quick, "python": platform.python_version(),
                              "machine": platform.machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "device": str(device)}}
    for name in wanted:
        print(f"== {name}", flush=True)
        section = available[name](args.quick, device)
        results[name] = section
        for key, t in section.get("targets", {}).items():
            mark = "met" if t["met"] else "MISSED"
            print(f"  {key:40s} {t['value']:>12.4g}  target {t['target']:>10s}  {mark}")
    if args.out:
        from ...io import write_json_atomic
        write_json_atomic(args.out, results)
        print(f"wrote {args.out}")
    return 0
