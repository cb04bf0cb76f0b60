"""Fields of an ID card from the lines read on its perspective-corrected crop.

The machine-readable zone, when there is one, is found among the lines (rows
of zone characters, fragments of one row joined left to right) and parsed
with its check digits (mrz.py). The printed fields are found by their labels
in the common card languages (the value after the label on its line, else the
next line); dates without a label fall back to the earliest (birth) and latest
(expiry) date on the card. A zone whose check digits all hold is trusted over
the print for the number, the dates and the name; each field says where it
came from.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ocrq.suite.mrz import looks_like_zone, parse

DATE = re.compile(r"\b(\d{1,2})[./ -](\d{1,2})[./ -](\d{4}|\d{2})\b|\b(\d{4})-(\d{2})-(\d{2})\b")
LABELS = {
    "birth_date": r"birth|\bdob\b|born|nascita|geburt|naissance|nacimiento|nascimento",
    "expiry_date": r"\bexp|expir|valid|scad|g[uü]ltig|ablauf|vencim|validade|until",
    "surname": r"surn|sumam|last name|family name|\bln\b|cognome|apellido|\bnom\b|nachname",
    "given_names": r"given|first name|\bfn\b|\bnome\b|pr[ée]nom|vorname|nombre",
    "name": r"\bname\b",
    "document_number": r"document|\bdoc\b|card ?n|\bid ?n|licen[cs]e|\bdl\b|\blic\b|\bno\b"
                       r"|number|\bnr\b|numero|número|n°",
}
NUMBER = re.compile(r"\b(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,}\b")


def _rows(lines: Sequence[Mapping[str, Any]]) -> list[str]:
    """Texts of the lines in reading order, fragments of one printed row joined."""
    items = []
    for i, ln in enumerate(lines):
        poly = ln.get("polygon") or [[0, i * 10], [1, i * 10], [1, i * 10 + 9], [0, i * 10 + 9]]
        ys = [float(pt[1]) for pt in poly]
        xs = [float(pt[0]) for pt in poly]
        items.append((min(ys), max(ys), min(xs), str(ln.get("text", ""))))
    items.sort()
    rows: list[list[tuple[float, float, float, str]]] = []
    for it in items:
        last = rows[-1] if rows else None
        if last and min(it[1], last[0][1]) - max(it[0], last[0][0]) > 0.5 * (it[1] - it[0]):
            last.append(it)
        else:
            rows.append([it])
    return [" ".join(t for *_, t in sorted(r, key=lambda x: x[2])) for r in rows]


def find_zone(rows: Sequence[str]) -> dict[str, Any] | None:
    """The machine-readable zone among the rows: the last run of 2 or 3 zone rows."""
    zone = [r for r in rows if looks_like_zone(r)]
    for take in (3, 2):
        if len(zone) >= take:
            parsed = parse(zone[-take:])
            if parsed is not None:
                return parsed
    return None


def _iso(m: re.Match[str]) -> str | None:
    if m.group(4):
        y, mo, d = int(m.group(4)), int(m.group(5)), int(m.group(6))
    else:
        a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        y = y if y > 99 else (2000 + y if y <= dt.date.today().year % 100 + 20 else 1900 + y)
        d, mo = (b, a) if a <= 12 < b else (a, b)  # day first unless it cannot be
    try:
        return dt.date(y, mo, d).isoformat()
    except ValueError:
        return None


def _after_label(rows: Sequence[str], pattern: str) -> list[str]:
    """What follows the label on its row, and the next row, for each labelled row."""
    rx = re.compile(pattern, re.IGNORECASE)
    out = []
    for i, row in enumerate(rows):
        m = rx.search(row)
        if m is None:
            continue
        rest = row[m.end():].lstrip(" :.#/-")
        out.append(rest)
        if i + 1 < len(rows):
            out.append(rows[i + 1])
    return out


def _date_field(rows: Sequence[str], pattern: str) -> str | None:
    for text in _after_label(rows, pattern):
        for m in DATE.finditer(text):
            iso = _iso(m)
            if iso:
                return iso
    return None


def _word_field(rows: Sequence[str], pattern: str) -> str | None:
    for text in _after_label(rows, pattern):
        value = re.sub(r"[^\w' -]", "", text).strip()
        if value and not DATE.search(value) and not re.search(r"\d", value):
            return value
    return None


def _number_field(rows: Sequence[str]) -> str | None:
    for text in _after_label(rows, LABELS["document_number"]):
        for m in NUMBER.finditer(text.upper()):
            if not DATE.search(m.group(0)):
                return m.group(0)
    return None


def extract(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = _rows(lines)
    zone = find_zone(rows)
    printed = [r for r in rows if not looks_like_zone(r)]
    dates = sorted(iso for r in printed for m in DATE.finditer(r) if (iso := _iso(m)))
    surname = _word_field(printed, LABELS["surname"])
    given = _word_field(printed, LABELS["given_names"])
    name = " ".join(x for x in (given, surname) if x) or _word_field(printed, LABELS["name"])
    fields: dict[str, Any] = {
        "name": name,
        "birth_date": _date_field(printed, LABELS["birth_date"]) or (dates[0] if dates else None),
        "expiry_date": _date_field(printed, LABELS["expiry_date"]) or (
            dates[-1] if len(dates) > 1 else None),
        "document_number": _number_field(printed),
    }
    sources = {k: "text" for k, v in fields.items() if v}
    if zone is not None:
        zone_name = " ".join(x for x in (zone["given_names"], zone["surname"]) if x)
        from_zone = {"name": zone_name, "birth_date": zone["birth_date"],
                     "expiry_date": zone["expiry_date"],
                     "document_number": zone["document_number"]}
        checks = zone["checks"]
        for key, value in from_zone.items():
            # A value the zone's check digit vouches for beats the print; the name
            # has none (no check covers the name row), so the print wins there.
            verified = key != "name" and checks.get(key, False)
            if value and (verified or not fields[key]):
                fields[key], sources[key] = value, "mrz" if verified else "mrz_unverified"
    fields["mrz"] = zone
    fields["sources"] = sources
    return fields
