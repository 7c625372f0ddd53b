"""One way to write an HTML report page: every page gradinv writes (a run, a record's audit, a
sweep) is a title, sections of text, tables and images, with the same look and escaping."""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 10px;text-align:right}"
         "img{image-rendering:pixelated;border:1px solid #ccc}")


def page(title: str, sections: Iterable[str]) -> str:
    """A whole document: ``title`` as the page title and first heading, then ``sections``
    (HTML fragments, e.g. from ``section``) in order."""
    body = "\n".join(sections)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>\n'
            f"<style>{STYLE}</style></head><body>\n<h1>{esc(title)}</h1>\n{body}\n"
            "</body></html>\n")


def section(heading: str, *parts: str) -> str:
    """A second-level heading followed by ``parts`` (HTML fragments)."""
    return f"<h2>{esc(heading)}</h2>\n" + "\n".join(parts)


def paragraph(text: str) -> str:
    """``text`` (HTML, already escaped where needed) as one paragraph."""
    return f"<p>{text}</p>"


def images(names: Sequence[str]) -> str:
    """One paragraph per image file (relative to the page), its name as the alternative text."""
    return "".join(f'<p><img src="{esc(n)}" alt="{esc(n)}"></p>' for n in names)


def cell(value: object, digits: int = 4) -> str:
    """A table cell's text: '-' for a missing value, ``digits`` significant digits for a
    float."""
    return esc("-" if value is None else f"{value:.{digits}g}" if isinstance(value, float)
               else str(value))


# What a reader sees above a column of gradinv's usual keys (others: the key, spaced).
HEADINGS = {"mean_psnr": "mean PSNR (dB)", "mean_psnr_std": "PSNR std (dB)",
            "best_psnr": "best PSNR (dB)", "mean_ssim": "mean SSIM", "mean_ssim_std": "SSIM std",
            "matching_cost_std": "matching cost std", "label_accuracy": "label number acc.",
            "label_existence_accuracy": "label existence acc.",
            "utility_accuracy": "utility (test acc.)"}


def heading(column: str) -> str:
    """The heading of the column of key ``column``."""
    return HEADINGS.get(column, column.replace("_", " "))


def table(rows: Iterable[dict], columns: Sequence[str], *,
          headings: Sequence[str] | None = None, digits: int = 4) -> str:
    """``rows`` (dicts) as a table of ``columns``, headed by ``headings`` (default: each
    key's ``heading``); a missing key shows as '-'."""
    head = "".join(f"<th>{esc(h)}</th>" for h in (headings or map(heading, columns)))
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c), digits)}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def esc(text: str) -> str:
    return html.escape(text)
