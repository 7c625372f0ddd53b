"""Defense benchmark: how much each defense costs GI, GI-z and GIAS, and what knowing it buys.

Every point attacks the same held-out Fashion-MNIST batches (test split; batch k = the first B
images with distinct labels from index 100*k) through ``gradinv.audit.run_config``: the client
computes its FedSGD gradient, applies one defense at one strength, and the three attacks
reconstruct from what the server observes, with the defense unknown to the attacker, and (for
the defenses an attacker can replay: pruning, clipping, DP-SGD's per-example clipping) known.
Noise has nothing to replay (the attacker does not know the draws), so it is run unknown only.

    python benchmarks/defenses.py --quick   # about 20 min on 2 CPU cores (2 worker processes)
    python benchmarks/defenses.py           # the full grid and budget, meant for a GPU
Prints the table (mean +- std over batches), checks the issue's targets, writes results.json
and one PSNR-vs-strength plot per defense under --out.

Also printed: the prior's floor, the PSNR of random samples of the prior (no update at all)
matched to the batch like a reconstruction. A defended update that leaves an attack below it
has told the attacker nothing it could use: read the attacks' margins over GI against it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from gradinv.audit import AuditConfig, PriorSpec, run_config
from gradinv.data import adapt_channels, load_dataset, private_batch
from gradinv.metrics import score
from gradinv.priors import load_prior
from gradinv.report.plots import pyplot, curve_colour
from gradinv.types import ThreatModel

ATTACKS = ("gi", "gi-z", "gias")
# Defenses an attacker can replay when it knows them: noise it cannot, and whole-update
# clipping only rescales the update, which the cosine cost does not see.
REPLAYABLE = ("prune", "dpsgd")


@dataclass(frozen=True)
class Level:
    """One defense at one strength (``defense`` None: undefended)."""

    defense: str | None
    setting: str | None = None
    strength: float | None = None

    @property
    def spec(self) -> tuple[str, ...]:
        if self.defense is None:
            return ()
        return (f"{self.defense}:{self.setting}={self.strength!r}",)

    @property
    def label(self) -> str:
        return "none" if self.defense is None else f"{self.defense} {self.setting}={self.strength:g}"


def levels(quick: bool) -> list[Level]:
    """The issue's grid: noise sigma, pruning rate (the GIAS code's grid in full mode),
    whole-update clipping, and DP-SGD at a few epsilons (per update, max_grad_norm 1)."""
    prune = [0.5, 0.9, 0.99] if quick else [0.3, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    return ([Level(None)]
            + [Level("noise", "sigma", s) for s in (1e-4, 1e-3, 1e-2, 1e-1)]
            + [Level("prune", "rate", r) for r in prune]
            + [Level("clip", "max_norm", c) for c in ((0.1,) if quick else (1.0, 0.1))]
            + [Level("dpsgd", "epsilon", e) for e in ((10.0, 1.0) if quick
                                                       else (100.0, 10.0, 1.0))])


SETTINGS = {
    # GIAS's generator lr: 1e-5 on the small ConvNet, whose weaker gradient the default 1e-4
    # (chosen on ResNet-18) overfits (benchmarks/RESULTS.md, the lr probe of issue 11).
    "quick": dict(model="convnet", width=16, channels=1, budget=200, latent_share=0.5,
                  gias_lr=1e-5, batches=[0, 1], batch_size=4, workers=2),
    "full": dict(model="resnet18", width=64, channels=3, budget=2000, latent_share=0.35,
                 gias_lr=1e-4, batches=[0, 1, 2], batch_size=4, workers=1),
}


def attack_settings(budget: int, latent_share: float, gias_lr: float) -> dict[str, dict]:
    """Equal budgets; GIAS spends ``latent_share`` of its budget in the latent stage."""
    return {"gi": {"iterations": budget}, "gi-z": {"iterations": budget},
            "gias": {"iterations": budget, "latent_iterations": int(budget * latent_share),
                     "lr": gias_lr}}


def run_point(task: tuple[Level, bool, int, dict]) -> list[dict]:
    """One (level, known, batch) point: its three attacks on one defended update."""
    level, known, batch, args = task
    data = load_dataset("fashion-mnist", split="test")
    config = AuditConfig(attack=",".join(ATTACKS), model=args["model"], width=args["width"],
                         dataset="fashion-mnist", image_size=32, channels=args["channels"],
                         batch_size=args["batch_size"], offset=100 * batch,
                         threat=ThreatModel(defense_known=known), defenses=level.spec,
                         attack_settings=attack_settings(args["budget"], args["latent_share"],
                                                         args["gias_lr"]),
                         prior=PriorSpec("fashion-mnist"), model_seed=0, attack_seed=batch,
                         device=args["device"])
    run = run_config(config, data=data)
    return [{"defense": level.defense or "none", "setting": level.setting,
             "strength": level.strength, "label": level.label, "known": known, "batch": batch,
             "attack": name, "psnr": o.scores.mean_psnr, "ssim": o.scores.mean_ssim,
             "seconds": o.seconds} for name, o in run.outcomes.items()]


def prior_floor(args: dict, draws: int = 20) -> float:
    """Mean PSNR over batches and ``draws`` of random prior samples G(z), z ~ N(0, I),
    matched to each batch's images as reconstructions are (scored in the data's grey)."""
    data, prior = load_dataset("fashion-mnist", split="test"), load_prior("fashion-mnist")
    values = []
    for batch_index in args["batches"]:
        batch = private_batch(data, args["batch_size"], size=32, channels=1,
                              offset=100 * batch_index)
        for draw in range(draws):
            z = torch.randn(len(batch.labels), prior.latent_dim,
                            generator=torch.Generator().manual_seed(draw))
            with torch.no_grad():
                samples = adapt_channels(prior.render(z, (1, 32, 32)), 1)
            values.append(score(samples, batch.images, predicted_labels=batch.labels,
                                true_labels=batch.labels, num_classes=10).mean_psnr)
    return statistics.fmean(values)


def tasks(args: dict) -> list[tuple[Level, bool, int, dict]]:
    return [(level, known, batch, args) for level in levels(args["quick"])
            for known in ((False, True) if level.defense in REPLAYABLE else (False,))
            for batch in args["batches"]]


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def run_all(args: dict) -> list[dict]:
    todo = tasks(args)
    print(f"{len(todo)} points x {len(ATTACKS)} attacks, {args['workers']} worker(s)", flush=True)
    results, started = [], time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args["workers"], mp_context=context,
                             initializer=_init_worker) as pool:
        for done, rows in enumerate(pool.map(run_point, todo), 1):
            results.extend(rows)
            shown = " ".join(f"{r['attack']} {r['psnr']:.2f}" for r in rows)
            known = " (known)" if rows[0]["known"] else ""
            print(f"[{done}/{len(todo)} {time.monotonic() - started:5.0f} s] batch "
                  f"{rows[0]['batch']} {rows[0]['label']}{known}: {shown}", flush=True)
    return results


def summary(results: list[dict]) -> list[dict]:
    """Mean and std over batches per (level, known, attack), in the grid's order."""
    keys = list(dict.fromkeys((r["label"], r["known"], r["attack"]) for r in results))
    rows = []
    for label, known, attack in keys:
        group = [r for r in results if (r["label"], r["known"], r["attack"]) == (label, known,
                                                                                   attack)]
        psnr = [r["psnr"] for r in group]
        rows.append({**{k: group[0][k] for k in ("defense", "setting", "strength")},
                     "label": label, "known": known, "attack": attack,
                     "psnr": statistics.fmean(psnr),
                     "psnr_std": statistics.pstdev(psnr) if len(psnr) > 1 else 0.0,
                     "ssim": statistics.fmean(r["ssim"] for r in group), "n": len(group)})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'defense':24s} {'known':5s} " + " ".join(f"{a:>15s}" for a in ATTACKS)
          + f" {'GIAS-GI':>8s}")
    for label, known in dict.fromkeys((r["label"], r["known"]) for r in rows):
        cells = {r["attack"]: r for r in rows if (r["label"], r["known"]) == (label, known)}
        shown = " ".join(f"{cells[a]['psnr']:6.2f} +- {cells[a]['psnr_std']:4.2f}" for a in ATTACKS)
        gap = cells["gias"]["psnr"] - cells["gi"]["psnr"]
        print(f"{label:24s} {'yes' if known else 'no':5s} {shown} {gap:+8.2f}")


def check_targets(rows: list[dict]) -> list[str]:
    """The issue's targets: GIAS >= GI + 3 dB wherever GI < 15 dB; under 90 % pruning the
    defense-aware attack >= the unaware one + 3 dB."""
    lines = []
    cell = {(r["label"], r["known"], r["attack"]): r["psnr"] for r in rows}
    for label, known in dict.fromkeys((r["label"], r["known"]) for r in rows):
        gi, gias = cell[(label, known, "gi")], cell[(label, known, "gias")]
        if gi < 15:
            ok = gias >= gi + 3
            lines.append(f"{'MET ' if ok else 'MISS'} GIAS - GI = {gias - gi:+.2f} dB "
                         f"({label}{', known' if known else ''}; GI {gi:.2f} dB)")
    for attack in ATTACKS:
        known, unknown = (cell.get(("prune rate=0.9", k, attack)) for k in (True, False))
        if known is not None and unknown is not None:
            lines.append(f"{'MET ' if known >= unknown + 3 else 'MISS'} prune 0.9, {attack}: "
                         f"known - unknown = {known - unknown:+.2f} dB")
    return lines


def plot(out: Path, rows: list[dict], floor: float) -> None:
    """PSNR vs strength per defense: one colour per attack, solid unknown, dashed known, the
    undefended level dotted, the prior's floor in grey."""
    plt = pyplot()
    if plt is None:
        print("matplotlib is not installed (pip install 'gradinv[plots]'): no plots written")
        return
    for defense in dict.fromkeys(r["defense"] for r in rows if r["defense"] != "none"):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for i, attack in enumerate(ATTACKS):
            base = next(r["psnr"] for r in rows if r["defense"] == "none" and r["attack"] == attack)
            ax.axhline(base, color=curve_colour(i), linestyle=":", alpha=0.7)
            for known in (False, True):
                points = [r for r in rows if (r["defense"], r["attack"], r["known"]) ==
                          (defense, attack, known)]
                if points:
                    ax.errorbar([r["strength"] for r in points], [r["psnr"] for r in points],
                                yerr=[r["psnr_std"] for r in points], marker="o", capsize=3,
                                color=curve_colour(i), linestyle="--" if known else "-",
                                label=f"{attack}{' (defense known)' if known else ''}")
        ax.axhline(floor, color="grey", linestyle="-.", label="random prior samples")
        setting = next(r["setting"] for r in rows if r["defense"] == defense)
        ax.set_xscale("log" if defense != "prune" else "linear")
        ax.set_xlabel(f"{defense} {setting}")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"Leakage vs {defense} (dotted: undefended)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"psnr-{defense}.png", dpi=100)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=int, help="iterations per attack")
    parser.add_argument("--batches", type=int, nargs="+", help="batch indices k")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--gias-lr", type=float, help="GIAS's generator-stage learning rate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/defenses")
    parser.add_argument("--from-results", metavar="RESULTS_JSON",
                        help="report an earlier run's results.json again (table, targets, "
                        "plots) without attacking")
    args = parser.parse_args()
    chosen = dict(SETTINGS["quick" if args.quick else "full"])
    for key in ("budget", "batches", "workers", "gias_lr"):
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    chosen.update(quick=args.quick, device=args.device)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(Path(args.from_results).read_text()) if args.from_results else None
    if earlier is not None:
        chosen = earlier["settings"]
    print(f"settings {chosen}", flush=True)
    results = earlier["results"] if earlier is not None else run_all(chosen)
    rows = summary(results)
    print_table(rows)
    floor = prior_floor(chosen)
    print(f"prior floor (random G(z) samples matched to the batch, no update): {floor:.2f} dB")
    targets = check_targets(rows)
    print("\n" + "\n".join(targets))
    (out / "results.json").write_text(json.dumps({"settings": chosen, "results": results,
                                                  "summary": rows, "prior_floor": floor,
                                                  "targets": targets}, indent=2))
    plot(out, rows, floor)
    print(f"\nwrote {out}/results.json and the plots")


if __name__ == "__main__":
    main()
