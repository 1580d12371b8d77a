"""Where an SDE twin's spread comes from, on the held-out repeats of a run cache's dataset.

Usage: python scripts/sde_spread_diag.py KIND CACHE [SDE_TWIN_DIR]
Prints the report's std ratio and W1 from the measured initial states, from each sequence's mean
initial state, and with no diffusion; then the per-step std ratio of each.
"""
import sys, glob, os, json, numpy as np, torch
from nado.data.dataset import load_dataset, split_dataset
from nado.twin import load_twin
from nado.twin.report import simulate_repeats, _simulate
from nado.twin.report_metrics import repeat_metrics, channel_scales
kind = sys.argv[1]; cache = sys.argv[2]
newest = lambda pat: max(glob.glob(f"{cache}/{pat}"), key=os.path.getmtime)
ds = load_dataset(newest(f"collect-{kind}-*") + "/data.h5")
sde = load_twin((sys.argv[3] if len(sys.argv) > 3 else newest(f"sde-{kind}-*")) + "/twin.pt")
test = split_dataset(ds, seed=0)["test"]
inp, dev, ini = test.repeats_inputs, test.repeats_outputs, test.repeats_initial
print("shapes", inp.shape, dev.shape, ini.shape)
sigma, _ = channel_scales(dev)
def rat(sim): return repeat_metrics(dev, sim, scale=sigma)
M, R = ini.shape[:2]
sim = simulate_repeats(sde, inp, ini, samples=100)
m = rat(sim); print("measured init: std_ratio %.3f w1 %.4f" % (m["std_ratio"], m["w1"]))
meanini = np.repeat(ini.mean(1, keepdims=True), R, 1)
sim2 = simulate_repeats(sde, inp, meanini, samples=100)
m = rat(sim2); print("mean init: std_ratio %.3f w1 %.4f" % (m["std_ratio"], m["w1"]))
# no process noise, measured init
Q=100; idx=np.arange(Q)%R
s=np.repeat(inp,Q,0).astype(np.float32); x0=ini[:,idx].reshape(M*Q,-1).astype(np.float32)
sim3=_simulate(sde, s, x0, seed=0, noise=False).reshape(M,Q,dev.shape[2],-1)
m = rat(sim3); print("measured init, no noise: std_ratio %.3f" % m["std_ratio"])
# per step std ratio
sd_dev = dev.std(1).mean((0,2)); print("dev std per step", np.round(sd_dev,4))
print("init std", ini.std(1).mean())
for nm, sm in (("meas", sim), ("mean", sim2), ("nonoise", sim3)):
    print(nm, np.round(sm.std(1).mean((0,2))/sd_dev, 2))
