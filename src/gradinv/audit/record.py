"""Audit a whole federation record: attack every recorded update (or a sample) and rank the
clients and rounds by how much their updates leak.

Leakage is scored as the attacks' mean PSNR/SSIM and label accuracy against the clients'
private batches where the record keeps them (``gradinv.record.private``), and always by the
matching cost the attack reached (lower: the update was matched more closely). Rankings use
PSNR where every attacked update is scored, the matching cost otherwise, each with its spread
over the updates. ``max_updates`` samples across clients and rounds (``stratified``), and the
report says what was not attacked.

The audit folder holds ``audit.json`` (the settings and the record's identity), one line per
attacked update in ``updates.jsonl`` written as each ends, and each update's run folder under
``runs/`` (what ``gradinv attack --record`` writes); an interrupted audit is resumed from them.
When every update is attacked it writes ``leakage.json``, ``leakage.png`` (leakage over
rounds: does it fall as the model trains?) and ``report.html``, which shows the most leaking
updates' reconstructions beside their ground truth.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean, stdev

import numpy as np
import torch

from ..checks import GradinvError, check_choice, check_int, one_line
from ..execution import batching_pays
from ..files import PENDING, FolderLock, append_lines, claim_folder
from ..progress import Progress
from ..record.format import Entry, Record, RecordMeta, open_record, read_jsonl
from ..report.page import esc, page, paragraph, section, table
from ..report.plots import line_chart
from ..report.png import CURVE_COLOURS
from ..report.run_folder import environment, json_safe, new_run_dir, write_json
from .backends import Backend, local_backend
from .privacy import privacy_section
from .update import RecordAttackConfig, UserModel, prepare_record_attacks, run_round_audit


@dataclass(frozen=True)
class LeakageAuditConfig(RecordAttackConfig):
    """Which updates of ``record`` to attack (all by default), and with what."""

    rounds: tuple[int, ...] | None = None
    clients: tuple[int, ...] | None = None
    max_updates: int | None = None
    # "on": the chosen clients of a round attacked together, the attacks that can (GI, GI-z,
    # GIAS) matching them in one batched pass (clients x restarts); "off": one update after the
    # other; "auto": on on a GPU, off on a CPU (where a larger batch is compute-bound and not
    # faster: benchmarks/RESULTS.md).
    batch_updates: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("batch_updates", self.batch_updates, BATCH_UPDATES)
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
    """Every attacked update's rows, the rankings, what was left out, and the report folder."""

    rows: list[dict]
    clients: list[dict]
    rounds: list[dict]
    folder: Path | None
    not_attacked: dict = field(default_factory=dict)


def select_entries(record: Record, config: LeakageAuditConfig) -> list[Entry]:
    """The recorded updates chosen by ``rounds``/``clients``, then ``max_updates`` of them
    sampled across clients and rounds (``stratified``); one clear error when none is left."""
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
        entries = stratified(entries, config.max_updates)
    return entries


def stratified(entries: list[Entry], n: int) -> list[Entry]:
    """``n`` of ``entries``, shared out as evenly as their counts allow between the clients
    (``quotas``), and spread over each client's rounds, each client's picks offset so that
    clients with few picks cover different rounds: a ranking of clients must not compare one
    client's early rounds with another's late ones, nor leave clients out while others count
    twice. In the order recorded."""
    by_client: dict[int, list[Entry]] = {}
    for e in sorted(entries, key=lambda e: (e.round, e.client_id)):
        by_client.setdefault(e.client_id, []).append(e)
    clients = sorted(by_client)
    chosen = set()
    for i, (client, quota) in enumerate(zip(clients, quotas([len(by_client[c]) for c in clients],
                                                            n))):
        own = by_client[client]
        offset = (i + 0.5) / len(clients)
        chosen |= {(own[int((j + offset) * len(own) / quota)].round, client)
                   for j in range(quota)}
    return [e for e in entries if (e.round, e.client_id) in chosen]


def quotas(sizes: list[int], n: int) -> list[int]:
    """``n`` picks shared between groups of ``sizes`` as evenly as possible (what a small
    group cannot take goes to the others); when some must get one more, they are spread over
    the groups rather than taken from the front."""
    quota = [0] * len(sizes)
    left = min(n, sum(sizes))
    while left:
        open_ = [i for i, size in enumerate(sizes) if quota[i] < size]
        share, extra = divmod(left, len(open_))
        favoured = {open_[k] for k in np.linspace(0, len(open_) - 1, extra).round().astype(int)}
        for i in open_:
            quota[i] = min(sizes[i], quota[i] + share + (i in favoured))
        left = min(n, sum(sizes)) - sum(quota)
    return quota


def not_attacked(record_entries: list[Entry], rows: list[dict]) -> dict:
    """What the audit left out of the record: how many updates, and the clients and rounds
    none of whose updates was attacked (their leakage is unknown, not low)."""
    attacked = {(r["round"], r["client"]) for r in rows}
    return {"updates": len({(e.round, e.client_id) for e in record_entries} - attacked),
            "of": len(record_entries),
            "clients": sorted({e.client_id for e in record_entries}
                              - {c for _, c in attacked}),
            "rounds": sorted({e.round for e in record_entries} - {r for r, _ in attacked})}


@dataclass(frozen=True)
class RoundTask:
    """One unit of an audit: attack the updates of ``clients`` in ``round`` (together, see
    ``run_round_audit``), writing each one's run folder under ``runs_dir`` (None: nothing
    written). Sent to a worker as it is, so it holds the settings, not the built attacks."""

    config: LeakageAuditConfig
    round: int
    clients: tuple[int, ...]
    runs_dir: str | None
    model: UserModel | None = None


BATCH_UPDATES = ("auto", "on", "off")
# Settings that change how an audit runs, not what it computes: an audit resumes across them.
HOW_IT_RUNS = ("batch_updates",)
# The most updates of a round attacked in one pass: rows are updates x restarts, and a round of
# a large federation would not fit in a GPU's memory as one batch.
MAX_UPDATES_PER_PASS = 8


def batches_updates(setting: str, device: torch.device) -> bool:
    """Whether ``batch_updates`` (``BATCH_UPDATES``) attacks a round's updates together on
    ``device``."""
    return setting == "on" or (setting == "auto" and batching_pays(device))


def round_tasks(config: LeakageAuditConfig, entries: list[Entry], runs_dir: str | None,
                model: UserModel | None, together: bool) -> list[RoundTask]:
    """The updates to attack as units: the clients of each round together (``together``; at
    most ``MAX_UPDATES_PER_PASS`` a unit), else one update per unit; in the order recorded."""
    by_round: dict[int, list[int]] = {}
    for e in entries:
        by_round.setdefault(e.round, []).append(e.client_id)
    size = MAX_UPDATES_PER_PASS if together else 1
    groups = [(r, tuple(cs[i:i + size])) for r, cs in by_round.items()
              for i in range(0, len(cs), size)]
    return [RoundTask(config, r, cs, runs_dir, model) for r, cs in groups]


def attack_round(task: RoundTask) -> dict:
    """Attack one round's chosen updates (in this process, a worker or a Ray task) with
    ``run_round_audit``, so each has the run folder ``gradinv attack --record`` writes; one
    line per update (its rows, one per attack, and its folder) under ``updates``."""
    results = run_round_audit(task.config, task.round, task.clients, out=task.runs_dir,
                              progress=False, model=task.model)
    record = open_record(task.config.record)
    lines = []
    for client, result in zip(task.clients, results):
        shared = record.entry(task.round, client).labels is not None
        rows = []
        for name, outcome in result.outcomes.items():
            s, rec = outcome.scores, outcome.reconstruction
            rows.append({"round": task.round, "client": client, "attack": name,
                         "matching_cost": rec.matching_cost,
                         "mean_psnr": None if s is None else s.mean_psnr,
                         "mean_ssim": None if s is None else s.mean_ssim,
                         "label_accuracy": None if s is None else s.label_accuracy,
                         "label_existence_accuracy": (None if s is None
                                                      else s.label_existence_accuracy),
                         "labels": rec.labels.tolist(),
                         "labels_inferred": bool(rec.extras.get("labels_inferred", False)),
                         "label_method": rec.extras.get("label_method"),
                         "labels_shared": shared, "seconds": outcome.seconds,
                         "batched_updates": rec.extras.get("batched_updates", 1)})
        lines.append({"round": task.round, "client": client, "rows": rows,
                      "folder": None if result.folder is None else str(result.folder)})
    return {"updates": lines}


def run_leakage_audit(config: LeakageAuditConfig, *, out: str | Path | None = "runs",
                      progress: bool = True, model: UserModel | None = None,
                      workers: int = 1, backend: Backend = local_backend,
                      log: Callable[[str], None] = print) -> LeakageResult:
    """Attack the chosen updates of ``config.record`` and rank clients and rounds by leakage.
    ``model`` (optional) is the user's own client model or its factory (over
    ``config.model_factory``); it must fit the record's state. The updates run on ``backend``
    with ``workers`` (``gradinv.audit.backends``); each attacked update is recorded in the
    audit folder as it ends, and an unfinished audit of the same settings and record under
    ``out`` is resumed, its attacked updates skipped."""
    check_int("workers", workers, low=1, high=1024)
    device, chosen, record, _ = prepare_record_attacks(config, out, model)  # checked first
    entries = select_entries(record, config)
    record.observations(entries)  # every file must exist before the walk
    folder = None if out is None else audit_folder(out, config, record, list(chosen), log)
    with nullcontext() if folder is None else FolderLock(folder, "the audit folder"):
        return _attack_and_summarise(config, record, entries, folder, device, model, workers,
                                     backend, progress)


def _attack_and_summarise(config: LeakageAuditConfig, record: Record, entries: list[Entry],
                          folder: Path | None, device: torch.device, model: UserModel | None,
                          workers: int, backend: Backend, progress: bool) -> LeakageResult:
    """``run_leakage_audit`` once its folder is chosen (and locked)."""
    lines = {} if folder is None else read_updates(folder)
    left = [e for e in entries if (e.round, e.client_id) not in lines]
    if folder is not None:  # what an interrupted run left unrecorded is redone
        shutil.rmtree(folder / PENDING, ignore_errors=True)
    todo = round_tasks(config, left, None if folder is None else str(folder / PENDING), model,
                       batches_updates(config.batch_updates, device))
    bar = Progress(f"audit ({len(entries) - len(left)} of {len(entries)} updates already done)",
                   len(left), enabled=progress, metric="matching cost")

    with nullcontext() if folder is None else append_lines(folder / UPDATES) as file:
        def done(task: RoundTask, outcome: dict | BaseException) -> None:
            if isinstance(outcome, BaseException):
                which = (f"client {task.clients[0]}'s update" if len(task.clients) == 1 else
                         f"the updates of clients {', '.join(map(str, task.clients))}")
                raise outcome if isinstance(outcome, GradinvError) else GradinvError(
                    f"attacking {which} of round {task.round} failed: {one_line(outcome)}")
            for line in outcome["updates"]:
                if folder is not None:
                    line = {**line, "folder": str(claim_folder(Path(line["folder"]), folder / RUNS))}
                lines[(line["round"], line["client"])] = line
                if file is not None:
                    file.write(json.dumps(json_safe(line)) + "\n")
                    file.flush()
                bar.update(len(lines) - len(entries) + len(left),
                           line["rows"][-1]["matching_cost"])
        try:
            backend(attack_round, todo, workers, done)
        finally:  # the workers have ended: what pending/ holds was never recorded
            if folder is not None:
                shutil.rmtree(folder / PENDING, ignore_errors=True)
    rows = [r for e in entries for r in lines[(e.round, e.client_id)]["rows"]]
    return _summarise(config, record, rows, lines, folder)


RUNS, UPDATES, IDENTITY = "runs", "updates.jsonl", "audit.json"


def audit_folder(out: str | Path, config: LeakageAuditConfig, record: Record,
                 attacks: list[str], log: Callable[[str], None]) -> Path:
    """The newest audit under ``out`` of the same settings and the same record
    (``Record.identity``): resumed when unfinished, summarised again (nothing attacked) when
    finished; else a new folder."""
    name = f"audit-{'-'.join(attacks)}-{record.meta.model.name}"
    settings = {k: v for k, v in asdict(config).items() if k not in HOW_IT_RUNS}
    identity = json_safe({"record": str(record.path.resolve()), "record_identity":
                          record.identity(), "config": settings})
    identity = json.loads(json.dumps(identity, default=str))
    for folder in sorted(Path(out).glob(f"*-{name}*"), reverse=True):
        try:
            same = json.loads((folder / IDENTITY).read_text()) == identity
        except (OSError, ValueError):
            continue
        if not same:
            continue
        if (folder / "leakage.json").exists():
            log(f"this audit is already done in {folder}: nothing to attack (another --out "
                "runs it again)")
        else:
            log(f"resuming the audit in {folder}")
        return folder
    folder = new_run_dir(out, name)
    write_json(folder / IDENTITY, identity)
    return folder


def read_updates(folder: Path) -> dict[tuple[int, int], dict]:
    """The updates an audit folder has recorded, by (round, client); a line torn by a kill
    (the last, unfinished) is dropped."""
    path = folder / UPDATES
    if not path.exists():
        return {}
    return {(v["round"], v["client"]): v for _, v in read_jsonl(path)}


def _summarise(config: LeakageAuditConfig, record: Record, rows: list[dict],
               lines: dict[tuple[int, int], dict], folder: Path | None) -> LeakageResult:
    """Rankings, what was left out, and (with a folder) leakage.json, leakage.png and
    report.html."""
    scored = all(r["mean_psnr"] is not None for r in rows)
    worst = _strongest_per_update(rows, scored)
    clients = _rank(worst, "client", scored)
    rounds = sorted(_rank(worst, "round", scored), key=lambda g: g["round"])
    left_out = not_attacked(record.entries(), rows)
    if folder is not None:
        spec = record.meta.model
        summary = {"record": str(record.path), "record_meta": record.meta.to_json(),
                   "attack": config.attack, "hyperparameters": config.hyperparameters,
                   "attack_settings": config.attack_settings,
                   "prior": None if config.prior is None else asdict(config.prior),
                   "model_factory": config.model_factory, "seed": config.seed,
                   "device": config.device, "ranked_by": "mean_psnr" if scored
                   else "matching_cost", "updates": rows, "clients": clients,
                   "rounds": rounds, "not_attacked": left_out,
                   "scored_channels": {"data": record.meta.data_channels,
                                       "model": spec.channels},
                   "run_folders": {f"{r}/{c}": line["folder"] for (r, c), line in
                                   lines.items()},
                   "environment": environment()}
        _plot(folder / "leakage.png", rows, scored)
        (folder / "report.html").write_text(_html(summary, scored, worst))
        write_json(folder / "leakage.json", summary)  # last: it marks the audit finished
    return LeakageResult(rows, clients, rounds, folder, left_out)


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


SCORES = ("mean_psnr", "mean_ssim", "label_accuracy", "label_existence_accuracy",
          "matching_cost")


def _rank(rows: list[dict], key: str, scored: bool) -> list[dict]:
    """Per client (or round): the mean of each score over its updates (one row each, the
    strongest attack's) and its spread (``<score>_std``, the standard deviation over those
    updates; None for one update), most leaking first. A ranking whose gaps are smaller than
    the spreads says little."""
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    out = []
    for k, rs in groups.items():
        item: dict = {key: k, "updates": len({(r["round"], r["client"]) for r in rs})}
        for m in SCORES:
            values = [r[m] for r in rs] if scored or m == "matching_cost" else []
            item[m] = fmean(values) if values else None
            item[f"{m}_std"] = stdev(values) if len(values) > 1 else None
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


# How many of the most leaking updates the report shows with their images.
SHOWN = 4


def _html(summary: dict, scored: bool, worst: list[dict]) -> str:
    legend = ", ".join(f"<span style='color:rgb{c}'>{esc(a)}</span>" for a, c in
                       zip(dict.fromkeys(r["attack"] for r in summary["updates"]),
                           CURVE_COLOURS * 4))
    note = ("scored against the clients' private batches kept in the record" if scored else
            "the record keeps no private batches (for every update attacked): ranked by "
            "matching cost, lower leaks more")
    spread = [c for m in ("mean_psnr", "matching_cost") for c in (m, f"{m}_std")]
    ranking = ["updates", *spread, "mean_ssim", "label_accuracy", "label_existence_accuracy"]
    return page(f"gradinv audit of {summary['record']}", [
        paragraph(f"attacks: {esc(summary['attack'])}; {note}. Each update counts with its "
                  "strongest attack's scores (the highest PSNR, or the lowest matching cost) in "
                  "the rankings; std: the spread over a client's (round's) updates."),
        paragraph(esc(_coverage(summary))),
        paragraph(esc(_channels_note(summary["scored_channels"]))),
        section("Clients, most leaking first", table(summary["clients"], ["client", *ranking])),
        section("Most leaking updates", *_shown(summary, scored, worst)),
        section("Leakage over rounds",
                paragraph(f'<img src="leakage.png" alt="leakage over rounds"> {legend}'),
                table(summary["rounds"], ["round", *ranking])),
        section("Every update", table(
            [{**r, "labels": _labels(r)} for r in summary["updates"]],
            ["round", "client", "attack", *SCORES, "labels", "label_method", "labels_shared",
             "seconds"])),
        *privacy_section(RecordMeta.from_json(summary["record_meta"])),
    ])


def _coverage(summary: dict) -> str:
    """What was attacked, and what was not (its leakage is unknown, not low)."""
    left = summary["not_attacked"]
    text = (f"Attacked {left['of'] - left['updates']} of the record's {left['of']} updates")
    if not left["updates"]:
        return text + "."
    parts = [f"not attacked: {left['updates']} updates"]
    if left["clients"]:
        parts.append(f"no update attacked of client{'s' if len(left['clients']) > 1 else ''} "
                     f"{', '.join(map(str, left['clients']))}")
    if left["rounds"]:
        parts.append(f"none of round{'s' if len(left['rounds']) > 1 else ''} "
                     f"{', '.join(map(str, left['rounds']))}")
    return f"{text}; {'; '.join(parts)} (their leakage is unknown, not low)."


def _channels_note(channels: dict) -> str:
    """Where scores and images differ: a grey dataset attacked through a colour model."""
    if channels["data"] == channels["model"]:
        return "Scores compare the images as the model sees them (the data's own channels)."
    return (f"The data has {channels['data']} channel(s), the model {channels['model']}: PSNR "
            f"and SSIM compare the reconstructions converted to the data's channels (the mean "
            f"over the model's channels), while the grids and images.safetensors show the "
            f"{channels['model']}-channel images the attack produced.")


def _labels(row: dict) -> str:
    return f"{' '.join(map(str, row['labels']))} ({'inferred' if row['labels_inferred'] else 'given'})"


def _shown(summary: dict, scored: bool, worst: list[dict]) -> list[str]:
    """The ``SHOWN`` most leaking updates: each one's grid (ground truth, where the record
    keeps it, above every attack's reconstruction) and a link to its run folder."""
    order = sorted(worst, key=(lambda r: -r["mean_psnr"]) if scored
                   else (lambda r: r["matching_cost"]))
    parts = []
    for r in order[:SHOWN]:
        run = summary["run_folders"].get(f"{r['round']}/{r['client']}")
        if run is None:
            continue
        where = f"{RUNS}/{Path(run).name}"
        score = (f"mean PSNR {r['mean_psnr']:.2f} dB" if scored
                 else f"matching cost {r['matching_cost']:.4g}")
        parts.append(paragraph(
            f"Round {r['round']}, client {r['client']}: {esc(r['attack'])}, {score}, labels "
            f"{esc(_labels(r))}; <a href=\"{esc(where)}/report.html\">run folder</a>"
            f"<br><img src=\"{esc(where)}/grid.png\" alt=\"round {r['round']} client "
            f"{r['client']}\">"))
    if not scored:
        parts.append(paragraph("The record keeps no private batch: each grid shows the "
                               "reconstructions only."))
    return parts
