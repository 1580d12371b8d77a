#!/usr/bin/env bash
# GPU check for nado (issue 14), for someone with a CUDA machine:
#   scripts/gpu-check.sh [DEVICE] [--mnist]     (DEVICE: cuda (default) or cuda:N)
# 1. correctness: tests/test_device.py, whose CUDA tests compare CPU and GPU results on the same
#    seed and inputs (twin layer forward + input gradients; a network's outputs and weight
#    gradients) within stated tolerances, and run the pipeline end to end on the GPU with every
#    kind of variant (PAT, refinement and cascade included); they must run, not skip;
# 2. speed: `nado bench --only twin --only network` on the CPU and on DEVICE, one JSON each, and a
#    summary: the twin layer's device-steps/s on both and the 60,000-sample epoch time of the
#    paper's MNIST network (target on a GPU: under 5 s);
# 3. with --mnist: the whole `scenarios/mnist_nra.toml` from scratch on DEVICE (`nado run --fresh`:
#    collection, both twins, both visibilities, every variant; target on a GPU: under 10 minutes),
#    its wall time printed and its stage times in gpu-check/mnist/report.md. It reads MNIST from
#    the scenario's task.data_dir; MNIST_SCENARIO=FILE runs a copy that points elsewhere.
# Writes gpu-check/{cpu,gpu}.json (and gpu-check/mnist/); put the figures in the README's GPU
# paragraph with the GPU's name. Exit status non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
MNIST=0
for arg in "$@"; do
    case "$arg" in
        --mnist) MNIST=1 ;;
        cuda|cuda:[0-9]*) DEVICE="$arg" ;;
        *) echo "gpu-check: unknown argument '$arg'; usage: scripts/gpu-check.sh [cuda|cuda:N] [--mnist]" >&2
           exit 2 ;;
    esac
done
SCENARIO="${MNIST_SCENARIO:-scenarios/mnist_nra.toml}"
PY="${PY:-.venv/bin/python}"
NADO="${NADO:-.venv/bin/nado}"
OUT=gpu-check
mkdir -p "$OUT"

"$PY" - "$DEVICE" <<'PY'
import sys, torch
from nado.device import resolve_device
from nado.errors import ConfigError
try:
    dev = resolve_device(sys.argv[1], "gpu-check device")
except ConfigError as e:                                 # no CUDA here, or no such GPU
    sys.exit(f"gpu-check: {e}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dev)}")
PY

echo "== correctness (CPU vs GPU on the same seed)"
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_device.py -k cuda | tee "$OUT/tests.txt"
if grep -q "skipped" "$OUT/tests.txt"; then
    echo "gpu-check: the CUDA tests skipped; they must run here" >&2
    exit 1
fi

echo "== speed"
"$NADO" bench --only twin --only network --quick --device cpu --out "$OUT/cpu.json"
"$NADO" bench --only twin --only network --quick --device "$DEVICE" --out "$OUT/gpu.json"

"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
cpu, gpu = (json.load(open(f"{out}/{k}.json")) for k in ("cpu", "gpu"))
for name, r in (("cpu", cpu), ("gpu", gpu)):
    t, n = r["twin"], r["network"]
    print(f"{name}: twin layer fw+bw {t['ours_fwbw_steps_per_s']:.3g} device-steps/s "
          f"({t['speedup_fwbw_vs_torchsde']:.2f}x torchsde); network epoch (60k) "
          f"{n['epoch_60k_s']:.1f} s, peak memory {n['peak_memory_gib']:.2f} GiB ({n['peak_memory_kind']})")
epoch = gpu["network"]["epoch_60k_s"]
print(f"GPU network epoch {epoch:.2f} s (target < 5 s): {'met' if epoch < 5 else 'MISSED'}")
print(f"GPU/CPU epoch speedup: {cpu['network']['epoch_60k_s'] / epoch:.1f}x")
PY

if [ "$MNIST" = 1 ]; then
    echo "== the whole MNIST scenario on $DEVICE ($SCENARIO, from scratch)"
    start=$(date +%s)
    "$NADO" run "$SCENARIO" --device "$DEVICE" --fresh --no-progress \
        --out "$OUT/mnist" --cache "$OUT/mnist-cache"
    wall=$(( $(date +%s) - start ))
    verdict=MISSED
    [ "$wall" -lt 600 ] && verdict=met
    echo "whole MNIST scenario on $DEVICE: $((wall / 60)) min $((wall % 60)) s (target < 10 min): $verdict;" \
         "stage times in $OUT/mnist/report.md"
fi
