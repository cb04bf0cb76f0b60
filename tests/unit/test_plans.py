from __future__ import annotations

from pathlib import Path

import pytest

from ocrq.plans import InvalidPlans, Plans, UnknownPlan

SPEC = {
    "default_bid": "default",
    "tids": {
        "ocr": {"steps": [{"step": "rotate", "hardware": "gpu"}, "detect", "recognize",
                          {"step": "reorder", "hardware": "cpu"}]},
        "fast": {"steps": ["detect", "recognize", "reorder"]},
    },
    "bids": {"acme": {"ocr": {"options": {"recognize": {"batch_lines": 4}},
                              "hardware": {"detect": "cpu"}}},
             "globex": {"ocr": {"steps": ["detect", "recognize", "reorder"]}}},
}


def test_bundled_default_plan_is_rotate_detect_recognize_reorder() -> None:
    plan = Plans.load().resolve(None, None)
    assert (plan.bid, plan.tid) == ("default", "ocr")
    assert [s.name for s in plan.steps] == ["rotate", "detect", "recognize", "reorder"]
    assert plan.step("reorder").hardware == "cpu"


def test_per_bid_override_patches_only_that_bid() -> None:
    plans = Plans(SPEC)
    acme = plans.resolve("acme", "ocr")
    assert acme.step("recognize").options == {"batch_lines": 4}
    assert acme.step("detect").hardware == "cpu"
    base = plans.resolve("default", "ocr")
    assert base.step("recognize").options == {} and base.step("detect").hardware == "gpu"
    assert [s.name for s in plans.resolve("globex", "ocr").steps][0] == "detect"
    assert plans.resolve("acme", "fast").step("recognize").options == {}


def test_unknown_tid_lists_the_bids_tids_unknown_bid_lists_no_bids() -> None:
    plans = Plans(SPEC)
    with pytest.raises(UnknownPlan) as e:
        plans.resolve("default", "nope")
    assert e.value.to_dict()["known"] == ["fast", "ocr"]
    with pytest.raises(UnknownPlan, match="unknown bid 'initech'") as e:
        plans.resolve("initech", "ocr")
    # Other businesses' names are not shown to whoever sent a wrong bid.
    assert "known" not in e.value.to_dict()
    assert not any(bid in e.value.message for bid in ("acme", "globex"))


@pytest.mark.parametrize("steps", [["recognize", "detect", "reorder"], ["detect", "reorder"],
                                   ["detect", "recognize", "reorder", "sharpen"]])
def test_invalid_step_lists_fail_at_load(steps: list[str]) -> None:
    with pytest.raises(InvalidPlans):
        Plans({"tids": {"x": {"steps": steps}}})


def test_broken_override_fails_at_load(tmp_path: Path) -> None:
    f = tmp_path / "plans.yaml"
    f.write_text("tids:\n  ocr:\n    steps: [detect, recognize, reorder]\n"
                 "bids:\n  acme:\n    ocr:\n      options: {recognize: {batch_lines: 0}}\n")
    with pytest.raises(InvalidPlans, match="batch_lines"):
        Plans.load(f)


def test_recognize_amounts_option_is_checked_at_load():
    base = {"tids": {"ocr": {"steps": ["detect", "recognize", "reorder"]}}}
    ok = Plans({**base, "bids": {"my": {"ocr": {"options": {"recognize": {"amounts": False}}}}}})
    assert ok.resolve("my", "ocr").step("recognize").options == {"amounts": False}
    with pytest.raises(InvalidPlans, match="recognize.amounts must be true or false"):
        Plans({**base, "bids": {"b": {"ocr": {"options": {"recognize": {"amounts": "no"}}}}}})


def test_recognize_second_reading_option_is_checked_at_load():
    base = {"tids": {"ocr": {"steps": ["detect", "recognize", "reorder"]}}}
    ok = Plans({**base, "bids": {"my": {"ocr": {"options": {"recognize": {"second_reading": 0}}}}}})
    assert ok.resolve("my", "ocr").step("recognize").options == {"second_reading": 0}
    for bad in (1.5, -0.1, "0.8", True):
        with pytest.raises(InvalidPlans, match="recognize.second_reading must be a number"):
            Plans({**base, "bids": {"b": {"ocr": {"options": {
                "recognize": {"second_reading": bad}}}}}})


def test_recognize_lexicon_option_is_checked_at_load():
    base = {"tids": {"ocr": {"steps": ["detect", "recognize", "reorder"]}}}
    ok = Plans({**base, "bids": {"my": {"ocr": {"options": {"recognize": {"lexicon": ["ms"]}}}}}})
    assert ok.resolve("my", "ocr").step("recognize").options == {"lexicon": ["ms"]}
    for bad, match in ((["xx"], "unknown lexicon language"), ("en", "list of language codes")):
        with pytest.raises(InvalidPlans, match=match):
            Plans({**base, "bids": {"b": {"ocr": {"options": {"recognize": {"lexicon": bad}}}}}})
