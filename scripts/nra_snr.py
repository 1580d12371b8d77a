"""SNR (DESIGN.md's definition) and the spread's shape (nado.data.snr: bimodal repeats, width over
the response range, spread by step) of the emulated NRA of each station file given: the noise
levels and the avalanche variant of docs/classification.md.
Usage: python scripts/nra_snr.py scripts/stations/nra_*.toml"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from emulator.nra import NRARig
from nado.data.snr import measure_snr


def main(paths: list[str]) -> None:
    for p in paths:
        params = dict(tomllib.loads(Path(p).read_text())["rigs"]["nra"])
        params.pop("backend")
        rig = NRARig("nra", seed=0, **params)
        snr = measure_snr(rig, 15.0, 34.0, M=64, R=32, T=20, seed=0)
        print(f"{Path(p).stem}: SNR {snr['snr']:.2f}, bimodal repeats {100 * snr['bimodal_fraction']:.1f} %, "
              f"width/range {snr['width_of_range']:.2f} (p90 {snr['width_of_range_p90']:.2f}), spread by step "
              f"{' '.join(f'{v:.2f}' for v in snr['spread_by_step'][::4])}  {params}")


if __name__ == "__main__":
    main(sys.argv[1:])
