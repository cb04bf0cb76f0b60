"""Correction of look-alike glyphs among the recogniser's runners-up (stages/lexicon.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ocrq.stages.lexicon import Glyph, Lexicon, UnknownLanguage
from ocrq.stages.recognize import RecognizeOptions, decode
from ocrq.stages.rejoin import join_times


@pytest.fixture(scope="module")
def en() -> Lexicon:
    return Lexicon(("en",))


def word(text: str, alts: dict[int, list[tuple[str, float]]] | None = None,
         prob: float = 0.6) -> list[Glyph]:
    alts = alts or {}
    return [Glyph(c, prob if i in alts else 0.98, tuple(alts.get(i, ())))
            for i, c in enumerate(text)]


def test_a_runner_up_glyph_that_makes_a_common_word_is_taken(en):
    assert en.correct(word("Tine", {2: [("m", 0.3)]})) == "Time"
    # Upper-case words stay upper case; punctuation at the ends is kept.
    assert en.correct(word("TINE:", {2: [("M", 0.3)]})) == "TIME:"
    assert en.correct(word("(AHOUNT)", {2: [("M", 0.2)]})) == "(AMOUNT)"
    # Two swaps in one word.
    assert en.correct(word("Descniplion", {4: [("r", 0.2)], 7: [("t", 0.2)]})) == "Description"


def test_nothing_changes_without_a_runner_up_or_for_common_words(en):
    assert en.correct(word("Tine")) == "Tine"  # the network offered nothing else
    assert en.correct(word("time", {2: [("n", 0.4)]})) == "time"  # already a word
    # A runner-up the network barely believed does not beat a plausible reading.
    assert en.correct(word("Tine", {2: [("m", 1e-6)]}, prob=0.999)) == "Tine"


def test_numbers_and_codes_are_not_words(en):
    assert en.correct(word("2019", {0: [("Z", 0.3)]})) == "2019"
    assert en.correct(word("SR12", {2: [("I", 0.4)]})) == "SR12"
    # One digit among letters is a glyph the network may have mistaken...
    assert en.correct(word("tota1", {4: [("l", 0.3)]})) == "total"
    # ... but only into a letter it offered.
    assert en.correct(word("tota1", {4: [("7", 0.3)]})) == "tota1"


def test_words_with_a_digit_are_looked_up_too(en):
    assert en.correct(word("MP3", {2: [("S", 0.03)]}, prob=0.9)) == "MP3"  # a word as read
    assert en.correct(word("CO2", {2: [("Z", 0.05)]}, prob=0.9)) == "CO2"
    # Very long alphanumeric runs are left alone (not words; quadratic work).
    assert not en.needs("Supercalifragilisticexpialidocious")


def test_words_joined_by_punctuation_are_corrected_one_by_one(en):
    # "Cade&Desc", "aty(s)": each word of the token as it would be alone.
    assert en.correct(word("Cade&Desc", {1: [("o", 0.3)]})) == "Code&Desc"
    assert en.correct(word("Tine/Date", {2: [("m", 0.3)]})) == "Time/Date"
    assert en.correct(word("(Tine)", {3: [("m", 0.3)]})) == "(Time)"
    assert en.needs("Cade&Date") and not en.needs("Code&Date")
    # Both words of one token, each with its own runner-up.
    assert en.correct(word("Tine-Tolal", {2: [("m", 0.3)], 7: [("t", 0.3)]})) == "Time-Total"
    # With a digit it is an amount or a code: its letters are left as read.
    assert en.correct(word("RM5.09", {2: [("S", 0.3)]})) == "RM5.09"
    assert en.correct(word("CTO-98", {1: [("I", 0.3)]})) == "CTO-98"
    assert not en.needs("RM5.09")
    # A correction that lengthens a word ("ß" cased "SS") keeps the parts after it whole.
    assert en.correct(word("STRAXE&DESC", {4: [("ß", 0.45)]})) == "STRASSE&DESC"


def test_two_letter_words_change_only_into_very_common_ones(en):
    assert en.correct(word("N0", {1: [("O", 0.3)]})) == "NO"
    assert en.correct(word("RH", {1: [("M", 0.3)]})) == "RH"  # "rm" is not common enough


def test_a_listed_language_that_cannot_be_looked_up_fails_at_once():
    import importlib.util

    if importlib.util.find_spec("jieba") is not None:
        assert Lexicon(("zh",)).zipf("中国") > 0
        return
    # wordfreq lists Chinese but needs jieba to look words up in it.
    with pytest.raises(UnknownLanguage, match="'zh' cannot be used here"):
        Lexicon(("en", "zh"))


def test_unknown_language_lists_the_known_ones():
    with pytest.raises(UnknownLanguage) as err:
        Lexicon(("en", "xx"))
    assert "xx" in err.value.message and "en" in err.value.message


def test_an_engine_with_an_unknown_lexicon_language_fails_at_start(model_root):
    from ocrq.engine import Engine
    from ocrq.settings import Settings

    settings = Settings.from_env(environ={"OCRQ_LEXICON": "en,klingon"}, model_root=model_root)
    assert settings.lexicon_languages == ("en", "klingon")
    with pytest.raises(UnknownLanguage, match="klingon"):
        Engine.from_settings(settings)
    off = Settings.from_env(environ={"OCRQ_LEXICON": "none"}, model_root=model_root)
    assert Engine.from_settings(off).options.recognize.languages == ()


def test_engine_corrects_a_real_misreading_unless_told_not_to(engine):
    from tests.fixtures import blurred_line

    image = blurred_line()
    assert engine.run(image).text() == "MEDIUM MONTH"
    d = engine.step_detect(image, 0)

    def read(languages: list[str], second_reading: float | None) -> list[str]:
        t = engine.step_recognize(image, 0, d.polygons, d.flipped, languages=languages,
                                  second_reading=second_reading)
        return [text for text, _ in t.texts]

    # One recogniser (a plan's recognize.second_reading: 0): the lexicon settles it.
    assert read(["en"], 0) == ["MEDIUM MONTH"]
    assert read([], 0) != ["MEDIUM MONTH"]  # what the network alone reads
    # The second reading settles the same words without any lexicon.
    assert read([], None) == ["MEDIUM MONTH"]


def test_decode_applies_the_lexicon_to_each_word():
    charset = ["", "T", "i", "n", "m", "e", "S", "H", "O", "P", " "]
    probs = np.full((30, len(charset)), 0.001, np.float32)
    probs[:, 0] = 0.99
    # "Tine SHOP": the third glyph is n (0.6) with m as runner-up (0.35).
    for t, k in [(1, 1), (3, 2), (5, 3), (7, 5), (12, 6), (14, 7), (16, 8), (18, 9)]:
        probs[t] = 0.001
        probs[t, k] = 0.95
    probs[5, 3], probs[5, 4] = 0.6, 0.35
    probs[10, 10] = 0.3  # a space between the words
    plain = decode(probs, charset, RecognizeOptions(languages=()))
    assert plain.text == "Tine SHOP"
    fixed = decode(probs, charset, RecognizeOptions(), lexicon=Lexicon(("en",)))
    assert fixed.text == "Time SHOP"
    assert fixed.confidence == plain.confidence


def test_a_correction_must_make_a_reasonably_common_word(en):
    # "tiran" is in the English list, but rarer than once per 100 million words.
    assert en.zipf("tiran") < 2.0 < en.zipf("time")
    assert en.correct(word("TIRAM", {4: [("N", 0.4)]})) == "TIRAM"


def test_glyphs_that_normalise_to_several_characters_are_not_corrected():
    # "ﬀ" is one glyph but two letters: its runner-ups would land on the wrong
    # characters, so the token is left as read.
    charset = ["", "ﬀ", "x", "e", "m", "T", "i", "n", "\u3000", " "]
    probs = np.full((20, len(charset)), 0.001, np.float32)
    probs[:, 0] = 0.99
    # ﬀ x <full-width space>: three glyphs, and "ffx" is three characters too.
    for t, k in [(1, 1), (3, 2), (5, 8), (8, 5), (10, 6), (12, 7), (14, 3)]:
        probs[t] = 0.001
        probs[t, k] = 0.95
    probs[3, 2], probs[3, 3] = 0.6, 0.35  # x, with e as runner-up: "ffe"
    probs[12, 7], probs[12, 4] = 0.6, 0.35  # n, with m as runner-up: "Time"
    probs[7, 9] = 0.3  # a space
    out = decode(probs, charset, RecognizeOptions(), lexicon=Lexicon(("en",)))
    assert out.text == "ffx Time"


def _soft_tokens(*pieces: str) -> tuple[list[list[int]], list[bool], list[str]]:
    """Tokens of ``pieces`` joined by soft breaks (only the geometry put them)."""
    chars = [c for p in pieces for c in p]
    tokens, k = [], 0
    for p in pieces:
        tokens.append(list(range(k, k + len(p))))
        k += len(p)
    return tokens, [True] * (len(pieces) - 1), chars


def _rejoined(en: Lexicon, *pieces: str) -> list[str]:
    from ocrq.stages.rejoin import rejoin as _rejoin

    tokens, soft, chars = _soft_tokens(*pieces)
    return ["".join(chars[k] for k in t) for t in _rejoin(tokens, soft, chars, en)]


def test_a_soft_break_inside_a_common_word_is_taken_back(en):
    assert _rejoined(en, "INC", "LUSIVE") == ["INCLUSIVE"]
    assert _rejoined(en, "(INC", "LUSIVE") == ["(INCLUSIVE"]
    assert _rejoined(en, "U.PR", "ICE") == ["U.PRICE"]
    assert _rejoined(en, "DESCR", "IPT", "ION") == ["DESCRIPTION"]
    assert _rejoined(en, "COOK", "IE", "PER") == ["COOKIE", "PER"]
    # A rarer word (zipf 1.5-3) joins too where its pieces are no words.
    assert _rejoined(en, "RETURNABL", "E,") == ["RETURNABLE,"]


def test_soft_breaks_between_words_names_codes_and_amounts_stay(en):
    assert _rejoined(en, "SUB", "TOTAL") == ["SUB", "TOTAL"]  # two words
    assert _rejoined(en, "MA", "LURI") == ["MA", "LURI"]  # a name the lexicon lacks
    assert _rejoined(en, "A", "RM") == ["A", "RM"]  # a one-letter word
    assert _rejoined(en, "SR", "I00100") == ["SR", "I00100"]  # the start of a code
    assert _rejoined(en, "RM", "S.25") == ["RM", "S.25"]  # an amount misread
    assert _rejoined(en, "36G", "JALAN") == ["36G", "JALAN"]


def test_a_break_the_network_emitted_is_not_taken_back(en):
    from ocrq.stages.rejoin import rejoin as _rejoin

    tokens, _, chars = _soft_tokens("INC", "LUSIVE")
    assert len(_rejoin(tokens, [False], chars, en)) == 2
    # Switched off per plan with the lexicon (no languages) or RecognizeOptions.rejoin.
    assert RecognizeOptions().rejoin is True


def test_a_non_word_takes_a_runner_up_the_network_hardly_offered(en):
    # "Fayment" is no word at all: a P at 0.002 is evidence enough.
    assert en.correct(word("Fayment", {0: [("f", 0.026), ("P", 0.002)]}, prob=0.97)) \
        == "Payment"  # the replaced letter's case is kept
    # Below the non-word floor, nothing is tried.
    assert en.correct(word("Fayment", {0: [("P", 0.0005)]}, prob=0.97)) == "Fayment"
    # A rare real word does not get that: it needs the floor of ordinary words.
    assert en.correct(word("Tine", {2: [("m", 0.01)]}, prob=0.98)) == "Tine"


def test_a_rare_real_word_changes_only_where_the_network_nearly_chose_otherwise(en):
    # "SDN" (an abbreviation the English list knows, rarely) read with D 0.886
    # and O 0.081: "SON" is far more common, but the network was sure.
    assert en.correct(word("SDN", {1: [("O", 0.081)]}, prob=0.886)) == "SDN"
    # The same word with a real doubt at that glyph does change.
    assert en.correct(word("SDN", {1: [("O", 0.4)]}, prob=0.55)) == "SON"


def test_a_letter_without_a_case_pair_takes_its_neighbours_case(en):
    from ocrq.stages.lexicon import _same_case

    assert _same_case("S", list("ßTRASSE"), 0) == "S"  # not "s": ß has no upper form
    assert _same_case("m", list("TINE"), 2) == "M"


def test_a_break_beside_a_times_colon_is_taken_back() -> None:
    def split(*parts: str) -> tuple[list[list[int]], list[str]]:
        chars = [c for p in parts for c in p]
        tokens, k = [], 0
        for p in parts:
            tokens.append(list(range(k, k + len(p))))
            k += len(p)
        return tokens, chars

    def joined(*parts: str) -> list[str]:
        tokens, chars = split(*parts)
        return ["".join(chars[k] for k in t) for t in join_times(tokens, chars)]

    assert joined("12/05/18", "12:12:", "57", "pm") == ["12/05/18", "12:12:57", "pm"]
    assert joined("03:", "17:50", "PM") == ["03:17:50", "PM"]
    assert joined("12：", "45") == ["12：45"]  # a full-width colon, as the network reads it
    assert joined("02:49", "PM") == ["02:49", "PM"]  # no colon at the break
    # Not a time: a label, a phone number, an hour past 23, minutes past 59.
    assert joined("TEL:", "016-7780546") == ["TEL:", "016-7780546"]
    assert joined("TIME:", "17:34:00") == ["TIME:", "17:34:00"]
    assert joined("25:", "10") == ["25:", "10"]
    assert joined("10:", "75") == ["10:", "75"]
