"""Sweeps: a grid of audit runs (attack x defense x strength x batch size x seed), resumable.

A sweep file (TOML) holds a ``[base]`` run configuration (the keys of a run's config.toml) and
a ``[grid]``::

    [base]
    model = "lenet"
    image_size = 16
    hyperparameters = { iterations = 300, restarts = 1 }

    [grid]
    attack = ["gi", "gias"]
    batch_size = [1, 4]
    seed = [0, 1, 2]
    [grid.defense]              # defense -> its strength setting and values; none: undefended
    none = {}
    prune = { rate = [0.5, 0.9] }
    noise = { sigma = [1e-4, 1e-2] }
    dp-noise = { epsilon = [2.0, 8.0], max_norm = 1.0 }   # the list is the strength

    [utility]                   # optional: what each defense level costs in accuracy
    rounds = 5
    num_clients = 10
    model = "convnet"

The grid's ``seed`` seeds the attack, and the victim too unless ``[base]`` fixes
``model_seed``. ``[base]``'s ``attack_settings`` and ``hyperparameters`` go to the runs of the
attacks that take them; each grid value is one attack, and no value may repeat; defenses in
``[base]`` cannot go with a ``none`` level, which they would defend. Every run appends one
JSON line to ``SWEEP_DIR/results.jsonl`` (its id, kind ``"attack"``, point, status, metrics or
error, run folder) and writes its run folder under ``SWEEP_DIR/runs``.

``[utility]`` holds the settings of a short federation (``gradinv.fl.FederationConfig``'s keys;
``model``, ``width``, ``init_scheme``, ``dataset``, ``data_dir``, ``image_size``, ``channels``
and ``threat`` (the BatchNorm mode the clients train in) default to ``[base]``'s). With it,
the sweep also trains one such federation per defense level of the grid (``none`` included),
its clients applying that defense (after ``[base]``'s defenses); each is one line of kind
``"utility"`` (id ``utility__<level>``, e.g. ``utility__prune-rate=0.9``) whose metrics hold
the final test ``accuracy``, the ``accuracy_history`` per round and the ``rounds``.

Only the parent process writes results.jsonl, so workers never interleave lines; it writes
each unit's line as soon as the unit ends (``gradinv.audit.backends``). A unit whose id already
has a line is skipped, so an interrupted sweep resumes where it stopped; failed units are
retried only when asked.
"""
from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..checks import GradinvError, check_int, one_line
from ..files import PENDING, append_lines, check_writable, claim_folder
from ..fl.victim import VictimConfig
from ..progress import Progress
from ..record.format import read_jsonl
from ..report.run_folder import json_safe
from .backends import Backend, local_backend
from .config import read_toml

if TYPE_CHECKING:
    from ..fl.federation import FederationConfig

GRID_KEYS = ("attack", "defense", "batch_size", "seed")
# The [utility] keys that default to [base]'s value (the victim both configs share, and the
# threat model): by default the short federation trains the audited architecture on the
# audited data, in the audited mode.
SHARED_KEYS = (*(f.name for f in fields(VictimConfig)), "threat")
RESULTS, RUNS = "results.jsonl", "runs"
SWEEP_FILE = "the sweep file"  # what errors name when the file's name is not known


@dataclass(frozen=True)
class SweepRun:
    """One unit of work: a stable id (the resume key), its coordinates (attack, defense,
    strength setting and value, batch size, seed; what ``gradinv report`` groups by) and its
    configuration: an audit run's (kind ``attack``) or a short federation's (``utility``)."""

    id: str
    point: dict
    config: dict
    kind: str = "attack"

    def line(self) -> dict:
        """What its results.jsonl line starts with."""
        return {"id": self.id, "kind": self.kind, "point": self.point, "config": self.config}

    def failed(self, err: BaseException) -> dict:
        """Its line when it failed with ``err``."""
        return {**self.line(), "status": "failed", "error": one_line(err)}


def expand(sweep: dict, source: str = SWEEP_FILE) -> list[SweepRun]:
    """Every unit of the sweep: the grid's audit runs, then the utility federations; any
    mistake in the file is one error naming ``source`` (the file) and the key."""
    return expand_grid(sweep, source) + expand_utility(sweep, source)


def expand_grid(sweep: dict, source: str = SWEEP_FILE) -> list[SweepRun]:
    """Every combination of the grid over ``base``, each checked as an ``AuditConfig`` before
    anything runs, so a typo fails the sweep at once instead of every run."""
    from .batch import AuditConfig
    from .config import config_from_dict
    unknown = sorted(set(sweep) - {"base", "grid", "utility"}) or sorted(
        set(_section(sweep, "grid", source)) - set(GRID_KEYS))
    if unknown:
        raise GradinvError(f"{source}: unknown sweep key {unknown[0]!r}; a sweep has [base], "
                           f"[grid] with {', '.join(GRID_KEYS)}, and optionally [utility]")
    base, grid = _section(sweep, "base", source), _section(sweep, "grid", source)
    axes = [_axis(grid, key, base, source) for key in ("attack", "batch_size", "seed")]
    _check_per_attack(base, axes[0], source)
    levels = _levels(sweep, source)
    runs = []
    for attack, batch_size, seed in itertools.product(*axes):
        for label, defenses in levels:
            run_id = f"{attack}__{label}__B{batch_size}__seed{seed}"
            config = {**_for_attack(_without_attack_seed(base), attack), "attack": attack,
                      "batch_size": batch_size, "seed": seed,
                      "defenses": [*base.get("defenses", []), *defenses]}
            config_from_dict(AuditConfig, config, where=f"{source} (run {run_id})")
            point = {"attack": attack, **_strength(defenses), "batch_size": batch_size,
                     "seed": seed}
            runs.append(SweepRun(run_id, point, config))
    return _unique(runs, source)


def expand_utility(sweep: dict, source: str = SWEEP_FILE) -> list[SweepRun]:
    """One short federation per defense level of the grid when the sweep has ``[utility]``,
    each checked as a ``FederationConfig`` before anything runs."""
    from ..fl.federation import FederationConfig
    from .config import config_from_dict
    if "utility" not in sweep:
        return []
    base, table = _section(sweep, "base", source), sweep["utility"]
    if not isinstance(table, dict) or "defenses" in table:
        raise GradinvError(f"{source}: [utility] is a table of federation settings; its "
                           "defenses come from [grid.defense] (and [base])")
    shared = {k: base[k] for k in SHARED_KEYS if k in base}
    # the table itself first, so that its own mistakes are not blamed on a defense
    config_from_dict(FederationConfig, {**shared, **table, "defenses": base.get("defenses", [])},
                     where=f"{source} [utility]")
    runs = []
    for label, defenses in _levels(sweep, source):
        config = {**shared, **table, "defenses": [*base.get("defenses", []), *defenses]}
        where = f"{source} [utility] with defense {label}"
        _check_same_noise(config["defenses"],
                          config_from_dict(FederationConfig, config, where=where), where)
        runs.append(SweepRun(f"utility__{label}", _strength(defenses), config, "utility"))
    return runs


def _check_same_noise(defenses: list, federation: FederationConfig, where: str) -> None:
    """A DP level's epsilon is calibrated over one update in the attack runs but over every
    update a client sends in the federation (``over_federation``): the privacy-utility plot
    would pair the leakage of one noise with the accuracy of another. Refused unless the level
    gives the count itself, so that both use the same noise."""
    from ..defenses.pipeline import as_spec, over_federation
    from ..fl.federation import participations
    most = max(participations(federation).values())
    specs = [as_spec(d) for d in defenses]
    for spec, covered in zip(specs, over_federation(specs, most, federation.local_steps)):
        added = sorted(set(covered.settings) - set(spec.settings))
        if added:
            raise GradinvError(f"{where}: {spec.name}'s epsilon would cover one update in the "
                               "attack runs but every update a client sends in the federation "
                               f"(up to {most}): give {added[0]} = {covered.settings[added[0]]} "
                               "in [grid.defense] so that both use the same noise")


def _section(sweep: dict, name: str, source: str) -> dict:
    table = sweep.get(name, {})
    if not isinstance(table, dict):
        raise GradinvError(f"{source}: [{name}] must be a table, not {type(table).__name__}")
    return table


def _levels(sweep: dict, source: str) -> list[tuple[str, list[dict]]]:
    """The grid's defense levels. [base]'s defenses apply to every run, so with them the
    ``none`` level (the default when the grid names no defense) would not be undefended,
    while the report draws it as such: refused."""
    base = _section(sweep, "base", source)
    levels = list(_defense_axis(_section(sweep, "grid", source).get("defense", {"none": {}}),
                                source))
    defenses = base.get("defenses", [])
    if not isinstance(defenses, list):
        raise GradinvError(f"{source}: [base] defenses must be a list, e.g. "
                           f"[\"clip:max_norm=4\"], not {type(defenses).__name__}")
    if defenses and any(label == "none" for label, _ in levels):
        raise GradinvError(f"{source}: [base] defenses apply to every run, so the grid's "
                           "'none' level (its only one without [grid.defense]) would not be "
                           "undefended, while the report draws it so: give them in "
                           "[grid.defense] instead, or leave 'none' out of it")
    return levels


def _check_per_attack(base: dict, names: list, source: str) -> None:
    """[base]'s per-attack settings and flat hyper-parameters go to the runs of the attacks
    that take them (``_for_attack``); one that no attack of the grid takes is a mistake."""
    from .. import attacks
    per_attack = base.get("attack_settings", {})
    if isinstance(per_attack, dict):
        extra = sorted(set(per_attack) - set(names))
        if extra:
            raise GradinvError(f"{source}: [base] attack_settings names {extra[0]!r}, which no "
                               f"run of the grid attacks ({', '.join(names)})")
    flat = base.get("hyperparameters", {})
    if isinstance(flat, dict) and flat:
        taken = set().union(*(attacks.accepted_hyperparameters(n) for n in names))
        extra = sorted(set(flat) - taken)
        if extra:
            raise GradinvError(f"{source}: [base] hyperparameters.{extra[0]}: no attack of the "
                               f"grid ({', '.join(names)}) takes it")


def _for_attack(base: dict, attack: str) -> dict:
    """[base] as a run of ``attack`` takes it: that attack's own ``attack_settings`` and the
    flat hyper-parameters it takes, so that a mixed sweep can tune GIAS without every GI run
    failing on GIAS's settings."""
    from .. import attacks
    own = dict(base)
    if isinstance(base.get("attack_settings"), dict):
        own["attack_settings"] = {k: v for k, v in base["attack_settings"].items() if k == attack}
    if isinstance(base.get("hyperparameters"), dict):
        takes = attacks.accepted_hyperparameters(attack)
        own["hyperparameters"] = {k: v for k, v in base["hyperparameters"].items() if k in takes}
    return own


def _unique(runs: list[SweepRun], source: str) -> list[SweepRun]:
    """A value repeated in the grid would run twice under one id: refused."""
    seen: set[str] = set()
    for run in runs:
        if run.id in seen:
            raise GradinvError(f"{source}: the grid gives run {run.id} twice (a value repeated "
                               "in [grid])")
        seen.add(run.id)
    return runs


def _without_attack_seed(base: dict) -> dict:
    """The grid's seed is always the attack's; the victim's follows it unless the base fixes
    ``model_seed`` (one victim, several attack seeds). A base copied from a run's config.toml
    holds both resolved: kept, they would make every seed of the grid the same run."""
    return {k: v for k, v in base.items() if k != "attack_seed"}


def _axis(grid: dict, key: str, base: dict, source: str) -> list:
    values = grid.get(key, [base.get(key, {"attack": "gi", "batch_size": 1, "seed": 0}[key])])
    if not isinstance(values, list) or not values:
        raise GradinvError(f"{source}: grid.{key} must be a non-empty list")
    for value in values if key == "attack" else ():
        if not isinstance(value, str) or "," in value:
            raise GradinvError(f"{source}: grid.attack value {value!r} is not one attack name; "
                               "a sweep runs one attack per run: list them, e.g. attack = "
                               "[\"gi\", \"gias\"]")
    return values


def _strength(defenses: list[dict]) -> dict:
    """The grid's defense as a point's coordinates: name, strength setting and value."""
    if not defenses:
        return {"defense": "none", "setting": None, "strength": None}
    setting, strength = next(iter(defenses[0]["settings"].items()), (None, None))
    return {"defense": defenses[0]["name"], "setting": setting, "strength": strength}


def _defense_axis(table: dict, source: str) -> Iterator[tuple[str, list[dict]]]:
    """(label, defenses) per defense and strength; ``none`` is the undefended run. The strength
    setting is the one given as a list (``{ epsilon = [2.0, 8.0], max_norm = 1.0 }``); the
    others are fixed at their value for every strength."""
    if not isinstance(table, dict):
        raise GradinvError(f"{source}: [grid.defense] must be a table, defense -> settings")
    for name, settings in table.items():
        if name == "none":
            yield "none", []
            continue
        if not isinstance(settings, dict):
            raise GradinvError(f"{source}: grid.defense.{name} must be a table of settings, "
                               "e.g. { rate = [0.5, 0.9] }")
        varied = [k for k, v in settings.items() if isinstance(v, list)]
        if len(varied) > 1:
            raise GradinvError(f"{source}: grid.defense.{name} varies {', '.join(varied)}: give "
                               "one strength setting as a list and the others as single values")
        if not settings:
            yield name, [{"name": name, "settings": {}}]
            continue
        key = varied[0] if varied else next(iter(settings))
        fixed = {k: v for k, v in settings.items() if k != key}
        values = settings[key] if varied else [settings[key]]
        for value in values:
            # the strength first: reports read it as the level's coordinate
            yield (f"{name}-{key}={value}",
                   [{"name": name, "settings": {key: value, **fixed}}])


def run_one(run: SweepRun, runs_dir: str) -> dict:
    """One unit of the sweep as a results.jsonl line; any error is recorded, not raised, so
    that one crashing run does not stop the others."""
    try:
        result = (_run_utility if run.kind == "utility" else _run_attack)(run, runs_dir)
    except Exception as err:  # noqa: BLE001 - recorded as the run's failure
        return run.failed(err)
    return {**run.line(), "status": "ok", **result}


def _run_attack(run: SweepRun, runs_dir: str) -> dict:
    from .batch import AuditConfig, run_audit
    from .config import config_from_dict
    config = config_from_dict(AuditConfig, run.config)
    result = run_audit(config, out=runs_dir, progress=False, name=run.id)  # type: ignore[arg-type]
    metrics = {name: {**o.scores.to_dict(), "seconds": o.seconds}
               for name, o in result.outcomes.items() if o.scores is not None}
    return {"metrics": metrics, "folder": str(result.folder)}


def _run_utility(run: SweepRun, runs_dir: str) -> dict:
    """The short federation's test accuracy after each round; nothing is written (the
    accuracies are all the report needs)."""
    from ..fl.federation import Federation, FederationConfig
    from .config import config_from_dict
    config = config_from_dict(FederationConfig, run.config)
    history = list(Federation(config).run(progress=False, log=lambda _: None).values())  # type: ignore[arg-type]
    return {"metrics": {"accuracy": history[-1], "accuracy_history": history,
                        "rounds": len(history)}}


def read_results(sweep_dir: str | Path) -> dict[str, dict]:
    """Each unit's last line in results.jsonl, by id ({} when there is none yet); a line
    written before utility units existed has no kind and is an attack run's."""
    path = Path(sweep_dir) / RESULTS
    if not path.exists():
        return {}
    last = {}
    for number, (_, line) in enumerate(read_jsonl(path), 1):  # a line torn by a kill: dropped
        if not isinstance(line.get("id"), str) or line.get("status") not in ("ok", "failed"):
            raise GradinvError(f"{path} line {number} is not a sweep result (no id or status)")
        last[line["id"]] = {"kind": "attack", **line}
    return last


def finished(sweep_dir: Path, runs: list[SweepRun], *, retry_failed: bool) -> set[str]:
    """Ids of ``runs`` with a line in results.jsonl (the last line of an id counts); failed
    ones only unless ``retry_failed``. A line whose configuration is not the run's (the sweep
    file changed since) is refused: skipping it would report stale results as current, and
    rerunning it would mix two sweeps in one folder."""
    last = read_results(sweep_dir)
    for run in runs:
        if run.id in last and last[run.id].get("config") != _as_written(run.config):
            raise GradinvError(f"{sweep_dir} holds a result for {run.id} made with other "
                               "settings than this sweep file's; give a new --out (or delete "
                               "that folder) to run the changed sweep")
    return {i for i, line in last.items()
            if line["status"] == "ok" or (line["status"] == "failed" and not retry_failed)}


def _as_written(value: object) -> object:
    """``value`` as results.jsonl holds it once written and read back."""
    return json.loads(_to_json(value))


def _to_json(value: object) -> str:
    return json.dumps(json_safe(value), default=str)


def run_sweep(sweep_file: str | Path, sweep_dir: str | Path, *, workers: int = 1,
              retry_failed: bool = False, progress: bool = True,
              backend: Backend = local_backend) -> list[dict]:
    """Run every unfinished unit of the sweep and return the lines written this time; each is
    written as soon as its unit ends, so an interrupted sweep keeps what finished."""
    check_int("workers", workers, low=1, high=1024)
    runs = expand(read_toml(sweep_file), str(sweep_file))
    check_writable(sweep_dir)
    sweep_dir = Path(sweep_dir)
    (sweep_dir / RUNS).mkdir(parents=True, exist_ok=True)
    done = finished(sweep_dir, runs, retry_failed=retry_failed)
    todo = [r for r in runs if r.id not in done]
    bar = Progress(f"sweep ({len(runs) - len(todo)} of {len(runs)} already done)", len(todo),
                   enabled=progress, metric="failed")
    lines: list[dict] = []
    shutil.rmtree(sweep_dir / PENDING, ignore_errors=True)  # unrecorded: redone
    with append_lines(sweep_dir / RESULTS) as results:
        def done(run: SweepRun, outcome: dict | BaseException) -> None:
            line = run.failed(outcome) if isinstance(outcome, BaseException) else outcome
            if "folder" in line:
                line["folder"] = str(claim_folder(Path(line["folder"]), sweep_dir / RUNS))
            results.write(_to_json(line) + "\n")
            results.flush()
            lines.append(line)
            bar.update(len(lines), sum(x["status"] == "failed" for x in lines))
        try:
            backend(partial(run_one, runs_dir=str(sweep_dir / PENDING)), todo, workers, done)
        finally:  # the workers have ended: what pending/ holds was never recorded
            shutil.rmtree(sweep_dir / PENDING, ignore_errors=True)
    return lines
