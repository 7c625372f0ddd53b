"""Audit a whole federation record: attack every recorded update (or a sample) and rank the
clients and rounds by how much their updates leak.

Leakage is scored as the attacks' mean PSNR/SSIM and label accuracy against the clients'
private batches where the record keeps them (``gradinv.record.private``), and always by the
matching cost the attack reached (lower: the update was matched more closely). Rankings use
PSNR where every attacked update is scored, the matching cost otherwise. The report folder
holds ``leakage.json``, ``leakage.png`` (leakage over rounds: does it fall as the model
trains?) and ``report.html``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean

import numpy as np

from ..checks import GradinvError, check_int
from ..progress import Progress
from ..record.format import Entry, Record
from ..record.private import load_private_batch
from ..report.plots import line_chart
from ..report.png import CURVE_COLOURS
from ..report.page import esc, page, paragraph, section, table
from ..report.run_folder import environment, new_run_dir, write_json
from .update import RecordAttackConfig, UserModel, attack_recorded, prepare_record_attacks


@dataclass(frozen=True)
class LeakageAuditConfig(RecordAttackConfig):
    """Which updates of ``record`` to attack (all by default), and with what."""

    rounds: tuple[int, ...] | None = None
    clients: tuple[int, ...] | None = None
    max_updates: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("rounds", "clients"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
                    raise GradinvError(f"{name} must be a non-empty list of integers")
                for v in value:
                    check_int(name, v, low=0)
                object.__setattr__(self, name, tuple(value))
        check_int("max_updates", self.max_updates, low=1, optional=True)


@dataclass(frozen=True)
class LeakageResult:
    rows: list[dict]
    clients: list[dict]
    rounds: list[dict]
    folder: Path | None


def select_entries(record: Record, config: LeakageAuditConfig) -> list[Entry]:
    """The recorded updates chosen by ``rounds``/``clients``, then the first ``max_updates``
    spread evenly over them; one clear error when none is left."""
    entries = record.entries()
    if not entries:
        raise GradinvError(f"{record.path} holds no complete round: nothing to audit "
                           "(empty, or cut off before its first round ended)")
    if config.rounds is not None:
        missing = sorted(set(config.rounds) - set(record.rounds()))
        if missing:
            raise GradinvError(f"{record.path} has no complete round {missing[0]} (complete: "
                               f"{', '.join(map(str, record.rounds()))})")
        entries = [e for e in entries if e.round in config.rounds]
    if config.clients is not None:
        entries = [e for e in entries if e.client_id in config.clients]
        if not entries:
            raise GradinvError(f"{record.path} has no update of clients "
                               f"{', '.join(map(str, config.clients))} in the chosen rounds")
    if config.max_updates is not None and len(entries) > config.max_updates:
        keep = np.linspace(0, len(entries) - 1, config.max_updates).round().astype(int)
        entries = [entries[i] for i in sorted(set(keep.tolist()))]
    return entries


def run_leakage_audit(config: LeakageAuditConfig, *, out: str | Path | None = "runs",
                      progress: bool = True, model: UserModel | None = None) -> LeakageResult:
    """Attack the chosen updates of ``config.record`` and rank clients and rounds by leakage.
    ``model`` (optional) is the user's own client model or its factory (over
    ``config.model_factory``); it must fit the record's state."""
    device, chosen, record, model = prepare_record_attacks(config, out, model)
    entries = select_entries(record, config)
    observations = record.observations(entries)  # every file must exist before the walk
    spec = record.meta.model
    bar = Progress("audit", len(entries), enabled=progress, metric="matching cost")
    rows = []
    for i, (entry, observation) in enumerate(zip(entries, observations)):
        truth = load_private_batch(record.path, entry.round, entry.client_id)
        outcomes = attack_recorded(chosen, model, record, observation, truth,
                                   seed=config.seed, device=device, progress=False)
        for name, outcome in outcomes.items():
            s = outcome.scores
            rows.append({"round": entry.round, "client": entry.client_id, "attack": name,
                         "matching_cost": outcome.reconstruction.matching_cost,
                         "mean_psnr": None if s is None else s.mean_psnr,
                         "mean_ssim": None if s is None else s.mean_ssim,
                         "label_accuracy": None if s is None else s.label_accuracy,
                         "labels_shared": observation.labels is not None,
                         "seconds": outcome.seconds})
        bar.update(i + 1, rows[-1]["matching_cost"])
    scored = all(r["mean_psnr"] is not None for r in rows)
    worst = _strongest_per_update(rows, scored)
    clients = _rank(worst, "client", scored)
    rounds = sorted(_rank(worst, "round", scored), key=lambda g: g["round"])
    folder = None
    if out is not None:
        folder = new_run_dir(out, f"audit-{'-'.join(chosen)}-{spec.name}")
        summary = {"record": str(record.path), "record_meta": record.meta.to_json(),
                   "attack": config.attack, "hyperparameters": config.hyperparameters,
                   "attack_settings": config.attack_settings,
                   "prior": None if config.prior is None else asdict(config.prior),
                   "model_factory": config.model_factory, "seed": config.seed,
                   "device": str(device), "ranked_by": "mean_psnr" if scored
                   else "matching_cost", "updates": rows, "clients": clients,
                   "rounds": rounds, "environment": environment()}
        write_json(folder / "leakage.json", summary)
        _plot(folder / "leakage.png", rows, scored)
        (folder / "report.html").write_text(_html(summary, scored))
    return LeakageResult(rows, clients, rounds, folder)


def _strongest_per_update(rows: list[dict], scored: bool) -> list[dict]:
    """Each update's row of its strongest attack (the highest PSNR; unscored, the lowest
    matching cost): what the update leaks is what the best attack recovers, and averaging in
    a weaker attack would understate it."""
    best: dict[tuple[int, int], dict] = {}
    for r in rows:
        key = (r["round"], r["client"])
        if key not in best or (r["mean_psnr"] > best[key]["mean_psnr"] if scored
                               else r["matching_cost"] < best[key]["matching_cost"]):
            best[key] = r
    return list(best.values())


def _rank(rows: list[dict], key: str, scored: bool) -> list[dict]:
    """Per client (or round): the mean of each score over its updates (one row each, the
    strongest attack's), most leaking first."""
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    out = []
    for k, rs in groups.items():
        item = {key: k, "updates": len({(r["round"], r["client"]) for r in rs}),
                "matching_cost": fmean(r["matching_cost"] for r in rs)}
        for m in ("mean_psnr", "mean_ssim", "label_accuracy"):
            item[m] = fmean(r[m] for r in rs) if scored else None
        out.append(item)
    return sorted(out, key=(lambda g: -g["mean_psnr"]) if scored
                  else (lambda g: g["matching_cost"]))


def _series(rows: list[dict], scored: bool) -> dict[str, list[float]]:
    metric = "mean_psnr" if scored else "matching_cost"
    rounds = sorted({r["round"] for r in rows})
    series = {}
    for attack in dict.fromkeys(r["attack"] for r in rows):
        series[attack] = [fmean(r[metric] for r in rows
                                if r["attack"] == attack and r["round"] == rnd)
                          for rnd in rounds]
    return series


def _plot(path: Path, rows: list[dict], scored: bool) -> None:
    """Leakage over rounds, one line per attack (log scale for the matching cost)."""
    rounds = sorted({r["round"] for r in rows})
    line_chart(path, {attack: (rounds, values) for attack, values in _series(rows, scored).items()},
               xlabel="round", ylabel="mean PSNR (dB)" if scored else "matching cost",
               log=not scored, title="leakage over rounds")


def _html(summary: dict, scored: bool) -> str:
    scores = ["mean_psnr", "mean_ssim", "label_accuracy", "matching_cost"]
    legend = ", ".join(f"<span style='color:rgb{c}'>{esc(a)}</span>" for a, c in
                       zip(dict.fromkeys(r["attack"] for r in summary["updates"]),
                           CURVE_COLOURS * 4))
    note = ("scored against the clients' private batches kept in the record" if scored else
            "the record keeps no private batches (for every update attacked): ranked by "
            "matching cost, lower leaks more")
    return page(f"gradinv audit of {summary['record']}", [
        paragraph(f"attacks: {esc(summary['attack'])}; {note}. Each update counts with its "
                  "strongest attack's scores (the highest PSNR, or the lowest matching cost) in "
                  "the rankings."),
        section("Clients, most leaking first", table(summary["clients"],
                                                     ["client", "updates"] + scores)),
        section("Leakage over rounds",
                paragraph(f'<img src="leakage.png" alt="leakage over rounds"> {legend}'),
                table(summary["rounds"], ["round", "updates"] + scores)),
        section("Every update", table(summary["updates"], ["round", "client", "attack"] + scores
                                      + ["labels_shared", "seconds"])),
    ])
