"""SNR (DESIGN.md's definition) of the emulated NRA of each station file given: the noise levels
of docs/classification.md. Usage: python scripts/nra_snr.py scripts/stations/nra_*.toml"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from emulator.calibrate import measure_snr
from emulator.nra import NRARig


def main(paths: list[str]) -> None:
    for p in paths:
        params = dict(tomllib.loads(Path(p).read_text())["rigs"]["nra"])
        params.pop("backend")
        rig = NRARig("nra", seed=0, **params)
        snr = measure_snr(rig, 15.0, 34.0, M=64, R=32, T=20, seed=0)
        print(f"{Path(p).stem}: SNR {snr['snr']:.2f}  {params}")


if __name__ == "__main__":
    main(sys.argv[1:])
