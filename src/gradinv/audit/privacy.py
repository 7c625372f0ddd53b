"""The privacy a record's federation spent, as the audit report shows it: each client's
updates and, per DP defense, the epsilon it spent over them (``fl.Federation.privacy``)."""
from __future__ import annotations

from ..record.format import RecordMeta
from ..report.page import esc, paragraph, section, table


def privacy_section(meta: RecordMeta) -> list[str]:
    """One report section with the account per client, or none for a record without one."""
    if meta.privacy is None:
        return []
    defenses = meta.privacy["defenses"]
    rows = [{"client": client, "updates": n,
             **{f"epsilon ({d['name']})": d["spent_epsilon"][client] for d in defenses}}
            for client, n in meta.privacy["participations"].items()]
    return [section("Privacy spent per client over the whole federation",
                    paragraph(esc(". ".join(meta.privacy_lines())) + "."),
                    table(rows, list(rows[0])))]
