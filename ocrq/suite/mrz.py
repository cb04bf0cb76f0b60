"""Machine-readable zones (ICAO Doc 9303): TD1, TD2 and TD3, with check digits.

Written here rather than taken from PyPI: the parsing is a page of slicing and
the 7-3-1 check digit; what ocrq needs beyond a parser is the step before it
(finding the zone among OCR lines, undoing what OCR does to ``<`` runs), which
no library does for us.

Layouts (0-based columns):

- TD1, 3 x 30 (ID cards): line 1 = code, state, document number [5:14] + check
  [14], optional [15:30] (a number longer than 9 continues there, check after
  it); line 2 = birth [0:6] + check, sex [7], expiry [8:14] + check,
  nationality [15:18], optional [18:29], composite check [29]; line 3 = name.
- TD2, 2 x 36 and TD3, 2 x 44 (passports): line 1 = code, state, name; line 2 =
  number [0:9] + check, nationality, birth [13:19] + check, sex [20], expiry
  [21:27] + check, optional (TD3: personal number [28:42] + check [42]),
  composite check (last column).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

FORMATS = {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}
WEIGHTS = (7, 3, 1)
# OCR reads the filler as these now and then; a zone has no other use for them.
FILLER_LOOKALIKES = str.maketrans({"«": "<", "‹": "<", "＜": "<", "(": "<", "{": "<",
                                   "[": "<", "£": "<", "€": "<"})
ZONE_CHARS = re.compile(r"[^A-Z0-9<]")


def char_value(ch: str) -> int:
    """Digits are themselves, A-Z 10-35, the filler 0 (anything else counts as 0)."""
    if ch.isdigit():
        return int(ch)
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    return 0


def check_digit(field: str) -> str:
    return str(sum(char_value(c) * WEIGHTS[i % 3] for i, c in enumerate(field)) % 10)


def _check(field: str, digit: str) -> bool:
    # A filler in place of a check digit stands for an empty (all-filler) field: 0.
    return check_digit(field) == (digit if digit != "<" else "0")


def normalise_line(text: str) -> str:
    """Upper case, look-alikes of ``<`` folded, spaces and stray marks dropped."""
    return ZONE_CHARS.sub("", text.upper().translate(FILLER_LOOKALIKES))


def looks_like_zone(text: str) -> bool:
    """A line that may be a zone row: long, almost only zone characters, with fillers."""
    raw = "".join(text.split()).upper().translate(FILLER_LOOKALIKES)
    if len(raw) < 24:
        return False
    good = sum(c.isascii() and (c.isalnum() or c == "<") for c in raw)
    return good / len(raw) >= 0.9 and raw.count("<") >= 2


def _fit(line: str, width: int) -> str:
    """A row cut or padded to ``width``: OCR often drops or adds trailing fillers."""
    return line[:width] if len(line) >= width else line + "<" * (width - len(line))


def detect_format(lines: Sequence[str]) -> str | None:
    """TD1/TD2/TD3 from the number of rows and their mean length (nearest layout)."""
    if len(lines) not in (2, 3):
        return None
    mean = sum(len(s) for s in lines) / len(lines)
    if len(lines) == 3:
        return "TD1" if 26 <= mean <= 34 else None
    width, name = min((abs(mean - w), n) for n, (_, w) in FORMATS.items() if n != "TD1")
    return name if width <= 5 else None


def _date(yymmdd: str, future: bool) -> str | None:
    """ISO date of a YYMMDD field; birth dates are in the past, expiry dates mostly not."""
    if not re.fullmatch(r"\d{6}", yymmdd):
        return None
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    now = dt.date.today().year % 100
    century = 2000 if (future or yy <= now) else 1900
    try:
        return dt.date(century + yy, mm, dd).isoformat()
    except ValueError:
        return None


# Fields of letters only: OCR's digit look-alikes there are letters.
LETTERS = str.maketrans("0125861", "OIZSBGI")


def _name(field: str) -> tuple[str, str]:
    surname, _, given = field.translate(LETTERS).strip("<").partition("<<")
    return surname.replace("<", " ").strip(), given.replace("<", " ").strip()


def _fields(number: str, number_check: str, birth: str, birth_check: str, sex: str,
            expiry: str, expiry_check: str, nationality: str) -> dict[str, Any]:
    return {"document_number": number.replace("<", ""),
            "birth_date": _date(birth, future=False), "birth_date_raw": birth,
            "expiry_date": _date(expiry, future=True), "expiry_date_raw": expiry,
            "sex": sex.replace("<", ""),
            "nationality": nationality.translate(LETTERS).replace("<", ""),
            "checks": {"document_number": _check(number, number_check),
                       "birth_date": _check(birth, birth_check),
                       "expiry_date": _check(expiry, expiry_check)}}


def _td1(a: str, b: str, c: str) -> dict[str, Any]:
    number, number_check, optional = a[5:14], a[14], a[15:30]
    if number_check == "<" and optional.strip("<"):
        # A long number: it continues in the optional field, its check digit last.
        tail = optional.rstrip("<")
        number, number_check = number + tail[:-1], tail[-1]
    out = _fields(number, number_check, b[0:6], b[6], b[7], b[8:14], b[14], b[15:18])
    out["optional"] = [a[15:30].strip("<"), b[18:29].strip("<")]
    out["checks"]["composite"] = _check(a[5:30] + b[0:7] + b[8:15] + b[18:29], b[29])
    out["surname"], out["given_names"] = _name(c)
    return out


def _td23(a: str, b: str, width: int) -> dict[str, Any]:
    out = _fields(b[0:9], b[9], b[13:19], b[19], b[20], b[21:27], b[27], b[10:13])
    out["surname"], out["given_names"] = _name(a[5:])
    if width == 44:
        personal = b[28:42]
        out["optional"] = [personal.strip("<")]
        out["checks"]["personal_number"] = _check(personal, b[42])
    else:
        out["optional"] = [b[28:35].strip("<")]
    out["checks"]["composite"] = _check(b[0:10] + b[13:20] + b[21:width - 1], b[width - 1])
    return out


def parse(lines: Sequence[str]) -> dict[str, Any] | None:
    """The zone's fields and which check digits hold; None if the rows fit no layout.

    ``valid`` is true when every check digit holds.
    """
    rows = [normalise_line(s) for s in lines if normalise_line(s)]
    fmt = detect_format(rows)
    if fmt is None:
        return None
    count, width = FORMATS[fmt]
    fitted = [_fit(r, width) for r in rows]
    out = _td1(*fitted) if fmt == "TD1" else _td23(fitted[0], fitted[1], width)
    head = fitted[0]
    out = {"format": fmt, "document_code": head[0:2].replace("<", ""),
           "issuing_state": head[2:5].translate(LETTERS).replace("<", ""), **out,
           "lines": fitted, "valid": all(out["checks"].values())}
    return out


def compose_td1(code: str, state: str, number: str, birth: str, sex: str, expiry: str,
                nationality: str, surname: str, given: str, optional: str = "") -> list[str]:
    """The three rows of a TD1 zone with correct check digits (generated cards, tests)."""
    def pad(s: str, n: int) -> str:
        return (s.upper().replace(" ", "<") + "<" * n)[:n]

    a = pad(code, 2) + pad(state, 3) + pad(number, 9) + check_digit(pad(number, 9)) + pad(
        optional, 15)
    b0 = birth + check_digit(birth) + pad(sex, 1) + expiry + check_digit(expiry) + pad(
        nationality, 3) + pad("", 11)
    b = b0 + check_digit(a[5:30] + b0[0:7] + b0[8:15] + b0[18:29])
    c = pad(surname.replace(" ", "<") + "<<" + given.replace(" ", "<"), 30)
    return [a, b, c]
