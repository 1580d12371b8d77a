"""`nado twin report` metrics of the cached SDE twin ("old") and another one ("new"), beside the ODE twin.

Usage: python scripts/sde_report_compare.py CACHE NEW_SDE_TWIN_DIR [KIND]
"""
import sys, glob, os, numpy as np
from nado.data.dataset import load_dataset
from nado.twin import load_twin
from nado.twin.report import twin_report
cache, sde_dir = sys.argv[1], sys.argv[2]; kind = sys.argv[3] if len(sys.argv) > 3 else "nra"
newest = lambda pat: max(glob.glob(f"{cache}/{pat}"), key=os.path.getmtime)
ds = load_dataset(newest(f"collect-{kind}-*") + "/data.h5")
ode = load_twin(newest(f"ode-{kind}-*") + "/twin.pt")
for name, d in (("old", newest(f"sde-{kind}-*")), ("new", sde_dir)):
    r = twin_report({"ode": ode, "sde": load_twin(d + "/twin.pt")}, ds)
    print(name, "sde std_ratio %.3f w1 %.4f | ode w1 %.4f -> w1 ratio %.2f" % (r["sde"]["std_ratio"], r["sde"]["w1"], r["ode"]["w1"], r["ode"]["w1"] / r["sde"]["w1"]))
