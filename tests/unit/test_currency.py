"""A short code in a currency's place settled among the network's runner-ups
(stages/currency.py), and decode's use of it."""

from __future__ import annotations

from ocrq.stages.currency import places, settle_currency
from ocrq.stages.lexicon import Glyph


def glyphs(text: str, alts: dict[int, list[tuple[str, float]]]) -> list[Glyph]:
    return [Glyph(c, 0.6 if i in alts else 0.98, tuple(alts.get(i, ())))
            for i, c in enumerate(text)]


def settle(text: str, alts: dict[int, list[tuple[str, float]]],
           next_word: str | None = None, alone: bool = False, label: bool = False) -> str:
    """``text`` with each currency place settled, as decoding does it."""
    g = glyphs(text, alts)
    for a, b in places(text, next_word, alone, label):
        text = text[:a] + settle_currency(g[a:b]) + text[b:]
    return text


def test_a_code_glued_to_an_amount_or_in_parentheses_becomes_a_currency() -> None:
    assert settle("RH13.65", {1: [("M", 0.3)]}) == "RM13.65"
    assert settle("TAX(RN)", {5: [("M", 0.1)]}) == "TAX(RM)"
    assert settle("RH", {1: [("M", 0.2)]}, next_word="5.00") == "RM"
    assert settle("RH", {1: [("M", 0.2)]}, alone=True) == "RM"
    assert settle("USO", {2: [("D", 0.2)]}, next_word="12.50") == "USD"
    # Ending a line of words, its amount in a box of its own ("CHANGE RH").
    assert settle("RH", {1: [("M", 0.13)]}, label=True) == "RM"


def test_nothing_changes_away_from_an_amount_or_without_the_glyph() -> None:
    assert settle("RH", {1: [("M", 0.2)]}, next_word="HELLO") == "RH"  # not a currency place
    assert settle("RH", {1: [("K", 0.2)]}, alone=True) == "RH"  # "RK" is no currency
    assert settle("RH13.65", {}) == "RH13.65"  # the network offered nothing
    assert settle("RM13.65", {1: [("H", 0.3)]}) == "RM13.65"  # a currency already
    assert places("SHIRT(L)", None, False) == []  # one letter is no code
    assert places("ITEM12.50", None, False) == []  # four letters: a word, not a code


def test_decode_takes_a_line_ending_code_for_a_currency_unless_it_is_a_word() -> None:
    import numpy as np

    from ocrq.stages.lexicon import Lexicon
    from ocrq.stages.recognize import RecognizeOptions, decode

    charset = ["", "C", "A", "S", "H", "R", "M", "T", "D", " "]

    def line(text: str, doubt: int, runner: str) -> np.ndarray:
        p = np.full((4 * len(text) + 4, len(charset)), 0.001, np.float32)
        p[:, 0] = 0.99
        for i, ch in enumerate(text):
            t = 2 + 4 * i
            p[t] = 0.001
            p[t, charset.index(ch)] = 0.95
        t = 2 + 4 * doubt
        p[t, charset.index(text[doubt])], p[t, charset.index(runner)] = 0.6, 0.3
        return p

    en = Lexicon(("en",))
    assert decode(line("CASH RH", 6, "M"), charset, RecognizeOptions(), lexicon=en
                  ).text == "CASH RM"
    # A common word there stays a word: "CAT" does not become "CAD".
    assert decode(line("CASH CAT", 7, "D"), charset, RecognizeOptions(), lexicon=en
                  ).text == "CASH CAT"
    # Alone after nothing but itself is the older rule ("RH" alone on its line).
    assert decode(line("RH", 1, "M"), charset, RecognizeOptions(), lexicon=en).text == "RM"


def test_decode_settles_the_currency_unless_told_not_to() -> None:
    import numpy as np

    from ocrq.stages.lexicon import Lexicon
    from ocrq.stages.recognize import RecognizeOptions, decode

    charset = ["", "R", "H", "M", "1", ".", "5", " "]
    seq = [(2, 1), (5, 2), (8, 4), (11, 5), (14, 6), (17, 6)]  # "RH1.55"
    p = np.full((20, len(charset)), 0.001, np.float32)
    p[:, 0] = 0.99
    for t, k in seq:
        p[t] = 0.001
        p[t, k] = 0.95
    p[5, 2], p[5, 3] = 0.6, 0.3  # M is the runner-up of H
    en = Lexicon(("en",))
    assert decode(p, charset, RecognizeOptions(), lexicon=en).text == "RM1.55"
    off = RecognizeOptions(currencies=False)
    assert decode(p, charset, off, lexicon=en).text == "RH1.55"
