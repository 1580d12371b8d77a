"""Refit only the SDE twin of KIND on a run cache's dataset and ODE twin, as `nado run` does.

Usage: python scripts/sde_refit.py KIND CACHE OUT_DIR [JSON of fit_sde keyword arguments]
(writes OUT_DIR/twin.pt; prints the fit time, the best validation point and the initial-state gain)
"""
import sys, glob, os, json, time
from pathlib import Path
from nado.data.dataset import load_dataset, split_dataset
from nado.twin import load_twin, save_twin, config_from_dataset, fit_sde
kind, cache, out = sys.argv[1], sys.argv[2], sys.argv[3]
kw = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
newest = lambda pat: max(glob.glob(f"{cache}/{pat}"), key=os.path.getmtime)
ds = load_dataset(newest(f"collect-{kind}-*") + "/data.h5")
train = split_dataset(ds, seed=0)["train"]
ode = load_twin(newest(f"ode-{kind}-*") + "/twin.pt")
oc = ode.config
arch = {"asvi": {"n_delay": 0, "n_aux": 10}, "nra": {"n_delay": 5, "n_aux": 10}}[kind]
cfg = config_from_dataset(train, "sde", **{**arch, "n_delay": oc.n_delay, "width": oc.width, "depth": oc.depth})
t0 = time.time()
twin, h = fit_sde(train, ode, cfg, seed=0, progress=False, **kw)
Path(out).mkdir(parents=True, exist_ok=True)
save_twin(twin, Path(out) / "twin.pt")
print("fit s", round(time.time() - t0), "best", h["best"], "gain", h.get("init_state_gain"))
