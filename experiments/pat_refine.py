"""Measure pat, pat_finetune and refine against NADO's SDE network on a scenario's emulated rigs.

Reuses ``nado run``'s cached device stages (collect, twins) for the scenario's seed, then for each
network seed: the SDE network (trained through the SDE twins), its transfer, PAT diagnostics
(gradient agreement twin vs rig, noise of the measured forward pass), ``pat_finetune``, ``pat``
from scratch (first seed only), ``refine`` with network-distributed data and with uniform data at
the same instrument time. Every measurement is appended to ``OUT/results.json`` as it finishes.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/pat_refine.py scenarios/quickstart.toml \
        --out runs/pat --cache .nado-cache --seeds 0 1 2 --pat-epochs 2 --refine-rounds 2

Classification scenarios only (Mackey-Glass: ``nado run`` with ``pat_finetune`` in the list).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--out", default="runs/pat")
    ap.add_argument("--cache", default=".nado-cache")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--pat-epochs", type=int, default=2)
    ap.add_argument("--pat-lr", type=float, default=None)
    ap.add_argument("--backward", default="sde", choices=["sde", "ode"])
    ap.add_argument("--start-kind", default="sde", choices=["sde", "ode"],
                    help="the twins NADO's network is trained on (ode: noise-free); results keep the key 'sde'")
    ap.add_argument("--pat-train", type=int, default=None, help="training sequences PAT drives per epoch")
    ap.add_argument("--pat-val", type=float, default=None, help="PAT's measured validation fraction")
    ap.add_argument("--pat-batch", type=int, default=None)
    ap.add_argument("--scratch-epochs", type=int, default=0, help="PAT from random weights (first seed); 0 = skip")
    ap.add_argument("--refine-rounds", type=int, default=2)
    ap.add_argument("--refine-sequences", type=int, default=64)
    ap.add_argument("--refine-epochs", type=int, default=5)
    ap.add_argument("--skip", nargs="*", default=[],
                    help="parts to skip: diag pat_finetune control refine uniform")
    ap.add_argument("--eval-seeds", type=int, default=0,
                    help="transfer sde and pat_finetune this many more times (drive noise seeds)")
    ap.add_argument("--report", action="store_true",
                    help="only summarise OUT/results.json (and OUT2.. given with --merge) into OUT/summary.md + figure")
    ap.add_argument("--merge", nargs="*", default=[], help="more results.json files whose seeds fill gaps")
    a = ap.parse_args(argv)
    if a.report:
        return report(Path(a.out), [Path(m) for m in a.merge])

    from nado.network import as_task_data, train_network
    from nado.network.pat import PatOptions, pat_diagnostics, pat_train
    from nado.network.refine import RefineOptions, refine
    from nado.network.transfer import transfer_metrics
    from nado.pipeline.cache import StageCache
    from nado.pipeline.networks import collect_seconds
    from nado.pipeline.run import Runner, open_rigs, task_digest
    from nado.pipeline.scenario import load_scenario
    from nado.tasks.adapt import build_conditions
    from nado.data.dataset import split_dataset

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    res["argv"] = vars(a)

    def save():
        res_path.write_text(json.dumps(res, indent=1))

    sc = load_scenario(a.scenario, quick=a.quick)
    runner = Runner(sc, out / "run", StageCache(Path(a.cache)), progress=False)
    conds = build_conditions(sc)
    runner.keys["task"] = {c.name: task_digest(c) for c in conds}
    layers = sc.network.layers
    with open_rigs(sc) as (_, clients):
        for kind in sc.kinds:
            runner.device_stages(kind, clients[kind])
        res["collect_s"] = collect_seconds(runner)
        res["snr"] = {k: runner.results["rigs"][sc.rig_name(k)]["snr"] for k in sc.kinds}
        cl = [clients[k] for k in layers]
        sde = [runner.twins[k][a.start_kind] for k in layers]
        back = [runner.twins[k][a.backward] for k in layers]
        base = [split_dataset(runner.datasets[k], seed=0)["train"] for k in layers]
        task = as_task_data(conds[0].data)
        cfg = sc.train_config(progress=False, noise=a.start_kind == "sde")
        for seed in a.seeds:
            r = res.setdefault(f"seed{seed}", {})
            wpath = out / f"sde_seed{seed}.pt"
            t0 = time.perf_counter()
            if wpath.is_file():
                from nado.network import Network
                net = Network(sde, cfg.nodes, task.n_inputs, task.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                              init_gain=cfg.init_gain, readout_from=cfg.readout_from, seed=seed)
                net.load_state_dict(torch.load(wpath, weights_only=True))
            else:
                net, _ = train_network(sde, task, cfg, seed=seed)
                torch.save(net.state_dict(), wpath)
            if "sde" not in r:
                m, _ = transfer_metrics(net, cl, task, cfg, seed=seed + 17)
                r["sde"] = {"sim": m["sim"], "transfer": m["transfer"], "transfer_s": m["instrument_s"],
                            "total_s": res["collect_s"] + m["instrument_s"],
                            "wall_s": time.perf_counter() - t0}
                save()
            print(f"seed {seed} sde: {r['sde']}", flush=True)
            if "diag" not in a.skip and "diag" not in r:
                r["diag"] = {b: pat_diagnostics(net, [runner.twins[k][b] for k in layers], cl, task, cfg,
                                                batch=64, seed=seed) for b in ("sde", "ode")}
                save()
                print(f"seed {seed} diag: {r['diag']}", flush=True)
            if "pat_finetune" not in a.skip and "pat_finetune" not in r:
                t0 = time.perf_counter()
                opts = PatOptions(epochs=a.pat_epochs, lr=a.pat_lr, backward=a.backward, max_train=a.pat_train,
                                  val_fraction=a.pat_val, batch_size=a.pat_batch)
                pnet, info = pat_train(net, back, cl, task, cfg, opts, seed=seed)
                torch.save(pnet.state_dict(), out / f"pat_finetune_seed{seed}.pt")
                m, _ = transfer_metrics(pnet, cl, task, cfg, seed=seed + 17)
                r["pat_finetune"] = {"sim": m["sim"], "transfer": m["transfer"], "pat_s": info["instrument_s"],
                                     "history": info["history"], "start_val": info["start_val"],
                                     "kept_start": info["kept_start"], "transfer_s": m["instrument_s"],
                                     "total_s": res["collect_s"] + info["instrument_s"]["total"] + m["instrument_s"],
                                     "wall_s": time.perf_counter() - t0}
                save()
                print(f"seed {seed} pat_finetune: {r['pat_finetune']['transfer']} kept_start={info['kept_start']} "
                      f"val={info['history']['val']}", flush=True)
            if "control" not in a.skip and "twin_finetune" not in r:
                # the control: the same fine-tune schedule through the twins only (no instrument time)
                from dataclasses import replace
                from nado.network.train import fit
                import copy
                tnet = copy.deepcopy(net)
                tcfg = replace(cfg, epochs=a.pat_epochs, lr=a.pat_lr or cfg.lr,
                               batch_size=a.pat_batch or cfg.batch_size, max_train=a.pat_train,
                               val_fraction=a.pat_val or cfg.val_fraction)
                fit(tnet, task, tcfg, seed=seed, init_readout=False)
                m, _ = transfer_metrics(tnet, cl, task, cfg, seed=seed + 17)
                r["twin_finetune"] = {"sim": m["sim"], "transfer": m["transfer"]}
                print(f"seed {seed} twin_finetune: {m['transfer']}", flush=True)
                # refine's control: its retrain schedule with no new data (twins unchanged)
                rnet = copy.deepcopy(net)
                rcfg = replace(cfg, epochs=a.refine_epochs, lr=cfg.lr / 2)
                for k in range(a.refine_rounds):
                    fit(rnet, task, rcfg, seed=int(seed) * 1000 + 97 * (k + 1), init_readout=False)
                m, _ = transfer_metrics(rnet, cl, task, cfg, seed=int(seed) * 1000 + 97 * a.refine_rounds + 17)
                r["retrain_only"] = {"sim": m["sim"], "transfer": m["transfer"]}
                save()
                print(f"seed {seed} retrain_only: {m['transfer']}", flush=True)
            if a.eval_seeds and "eval" not in r:
                from nado.network import Network
                import numpy as np
                r["eval"] = {}
                for name in ("sde", "pat_finetune"):
                    p = out / f"{name}_seed{seed}.pt"
                    if not p.is_file():
                        continue
                    en = Network(sde, cfg.nodes, task.n_inputs, task.n_outputs, pi=cfg.pi_specs(), bias=cfg.bias,
                                 init_gain=cfg.init_gain, readout_from=cfg.readout_from, seed=seed)
                    en.load_state_dict(torch.load(p, weights_only=True))
                    accs = [transfer_metrics(en, cl, task, cfg, seed=seed + 1000 + k)[0]["transfer"]["accuracy"]
                            for k in range(a.eval_seeds)]
                    r["eval"][name] = {"transfer_accuracies": accs, "mean": float(np.mean(accs)),
                                       "std": float(np.std(accs))}
                save()
                print(f"seed {seed} eval: {r['eval']}", flush=True)
            if a.scratch_epochs and seed == a.seeds[0] and "pat" not in r:
                t0 = time.perf_counter()
                scfg = cfg
                opts = PatOptions(epochs=a.scratch_epochs, backward=a.backward, max_train=a.pat_train,
                                  val_fraction=a.pat_val, batch_size=a.pat_batch)
                pnet, info = pat_train(None, back, cl, task, scfg, opts, seed=seed)
                m, _ = transfer_metrics(pnet, cl, task, cfg, seed=seed + 17)
                r["pat"] = {"sim": m["sim"], "transfer": m["transfer"], "pat_s": info["instrument_s"],
                            "history": info["history"], "transfer_s": m["instrument_s"],
                            "total_s": res["collect_s"] + info["instrument_s"]["total"] + m["instrument_s"],
                            "wall_s": time.perf_counter() - t0}
                save()
                print(f"seed {seed} pat: {r['pat']['transfer']}", flush=True)
            for src, key in (("network", "refine"), ("uniform", "refine_uniform")):
                if key in r or (src == "network" and "refine" in a.skip) or (src == "uniform" and "uniform" in a.skip):
                    continue
                t0 = time.perf_counter()
                opts = RefineOptions(rounds=a.refine_rounds, sequences=a.refine_sequences, source=src,
                                     retrain_epochs=a.refine_epochs)
                _, info = refine(net, cl, task, cfg, base, opts, seed=seed)
                acc = 0.0
                rounds = []
                for rd in info["rounds"]:
                    acc += rd["instrument_s"]["collect"] + rd["instrument_s"]["transfer"]
                    rounds.append({"round": rd["round"], "sim": rd["sim"], "transfer": rd["transfer"],
                                   "instrument_s": rd["instrument_s"], "sequences": rd["sequences"],
                                   "twin_loss": rd["twin_loss"], "total_s": res["collect_s"] + acc,
                                   "twin_nrmse_new_data": rd.get("twin_nrmse_new_data")})
                r[key] = {"rounds": rounds, "instrument_s": info["instrument_s"],
                          "wall_s": time.perf_counter() - t0}
                save()
                print(f"seed {seed} {key}: {[x['transfer'] for x in rounds]}", flush=True)


def report(out: Path, merge: list[Path]) -> None:
    """Table (per seed and mean) of transfer accuracy and instrument time, and the figure."""
    import numpy as np
    from nado.pipeline.report import instrument_figure
    res = json.loads((out / "results.json").read_text())
    for m in merge:
        for k, v in json.loads(m.read_text()).items():
            if k.startswith("seed"):
                for kk, vv in v.items():
                    res.setdefault(k, {}).setdefault(kk, vv)
    seeds = sorted(k for k in res if k.startswith("seed"))
    cols = ["sde", "pat_finetune", "twin_finetune", "pat", "refine", "refine_uniform", "retrain_only"]

    def last(e: dict) -> dict:
        return e["rounds"][-1] if "rounds" in e else e

    def acc(e):
        return None if e is None else 100 * last(e)["transfer"]["accuracy"]

    def tot(e):
        return None if e is None or "total_s" not in last(e) else last(e)["total_s"]
    lines = ["| seed | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    vals = {c: [] for c in cols}
    for sd in seeds:
        row = []
        for c in cols:
            a_ = acc(res[sd].get(c))
            row.append("-" if a_ is None else f"{a_:.1f}")
            if a_ is not None:
                vals[c].append(a_)
        lines.append(f"| {sd} | " + " | ".join(row) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean(v):.1f}" if v else "-" for v in vals.values()) + " |")
    s0 = res[seeds[0]]
    lines += ["", "| variant | instrument time (s) | x NADO |", "|---|---|---|"]
    for c in cols:
        t = tot(s0.get(c))
        if t is not None:
            lines.append(f"| {c} | {t:.0f} | {t / s0['sde']['total_s']:.2f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    nets = {}
    for c in ("sde", "pat", "pat_finetune", "refine", "refine_uniform"):
        e = s0.get(c)
        if e is None:
            continue
        if "rounds" in e:
            nets[c] = {"transfer": e["rounds"][-1]["transfer"], "instrument_total_s": e["rounds"][-1]["total_s"],
                       "instrument_by_stage": {"collect": res["collect_s"]},
                       "rounds": [{"transfer": r["transfer"], "instrument_s": r["instrument_s"]} for r in e["rounds"]]}
        else:
            nets[c] = {"transfer": e["transfer"], "instrument_total_s": e["total_s"]}
    instrument_figure({"networks": nets, "instrument_s": {"collect.nra": res["collect_s"]}},
                      out / "instrument_time.png")


if __name__ == "__main__":
    main()
