"""Write ocrq/stages/currencies.py: the currency symbols of every CLDR locale.

The recogniser's word rules (stages/recognize.py) settle a short code beside
an amount ("RH13.65", "TAX(RN)") to a currency symbol among the network's own
runner-up glyphs. The symbols are CLDR's, read through Babel at development
time, so Babel is not a run-time dependency:

    pip install babel && python scripts/gen_currencies.py
"""

from __future__ import annotations

from pathlib import Path

from babel import Locale, localedata

OUT = Path(__file__).resolve().parent.parent / "ocrq" / "stages" / "currencies.py"


def symbols() -> list[str]:
    found: set[str] = set()
    for ident in localedata.locale_identifiers():
        try:
            locale = Locale.parse(ident)
        except (ValueError, LookupError):
            continue
        for code, sym in locale.currency_symbols.items():
            found.add(code.upper())
            # Letter symbols only: "$" or "€" is no misread letter.
            if sym.isascii() and sym.isalpha() and 2 <= len(sym) <= 3:
                found.add(sym.upper())
    return sorted(s for s in found if s.isalpha() and 2 <= len(s) <= 3)


def main() -> None:
    import babel

    items = symbols()
    rows = [", ".join(f'"{s}"' for s in items[i : i + 12]) for i in range(0, len(items), 12)]
    body = ",\n    ".join(rows)
    OUT.write_text(
        f'"""Currency codes and letter symbols of every CLDR locale (Babel {babel.__version__}),\n'
        "upper-cased; written by scripts/gen_currencies.py, do not edit.\"\"\"\n\n"
        f"CURRENCIES: frozenset[str] = frozenset({{\n    {body},\n}})\n"
    )
    print(f"{len(items)} symbols -> {OUT}")


if __name__ == "__main__":
    main()
