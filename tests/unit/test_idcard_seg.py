"""The ID-card finder's learned segmenter (issue 13, ocrq/suite/idcard_seg.py): its
numpy forward pass is the torch network it was trained as, it finds a generated
card the classic pick gets wrong, its training is repeatable, and an ``idd``
version stored before it still loads and finds cards as it did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ocrq.evaluation.idcard_eval import corner_error
from ocrq.models.builtin import catalog
from ocrq.suite import idcard, idcard_seg, idcard_seg_train, idcard_synth
from ocrq.suite.idcard_cv import find_quad


def _card(seed: int, index: int) -> idcard_synth.Sample:
    """Card ``index`` of the set ``idcard_synth --seed SEED`` writes."""
    rng = np.random.default_rng(seed)
    for _ in range(index):
        idcard_synth.generate(rng)
    return idcard_synth.generate(rng)


@pytest.fixture(scope="module")
def hard() -> idcard_synth.Sample:
    # Tuning seed 1, card 13: a glare spot washes out the card's top right; the
    # classic pick is an outline 31% of the diagonal off.
    return _card(1, 13)


def test_the_numpy_forward_pass_is_the_torch_network() -> None:
    torch = pytest.importorskip("torch")
    layers = idcard_seg.unpack(idcard.PARAMS["segnet"])
    assert layers is not None
    net = idcard_seg.torch_net()
    with torch.no_grad():
        for param, value in zip(net.parameters(), [a for wb in layers for a in wb],
                                strict=True):
            param.copy_(torch.tensor(value))
        image = _card(101, 0).image
        want = torch.sigmoid(net(torch.tensor(idcard_seg.net_input(image))[None]))[0, 0]
    assert np.abs(idcard_seg.predict(image, layers) - want.numpy()).max() < 1e-4


def test_the_mask_quad_is_near_the_card(hard: idcard_synth.Sample) -> None:
    """Before any edge refinement the network's quad is within a few percent of the
    diagonal (the mask is coarse: 64 px across)."""
    layers = idcard_seg.unpack(idcard.PARAMS["segnet"])
    assert layers is not None
    h, w = hard.image.shape[:2]
    quad = idcard_seg.mask_quad(idcard_seg.predict(hard.image, layers), (h, w))
    assert quad is not None and corner_error(quad, hard.corners) <= 0.05


def test_the_segmenter_finds_a_card_the_classic_pick_misses(
        hard: idcard_synth.Sample) -> None:
    classic = find_quad(hard.image, {**idcard.PARAMS, "segnet": {}})
    assert classic is not None and corner_error(classic.corners, hard.corners) > 0.1
    found = find_quad(hard.image, idcard.PARAMS)
    assert found is not None and corner_error(found.corners, hard.corners) <= 0.01


def test_a_segnet_of_another_layout_is_not_used(hard: idcard_synth.Sample) -> None:
    other = {**idcard.PARAMS["segnet"], "layout": [[3, 4, 2]]}
    assert idcard_seg.unpack(other) is None
    found = find_quad(hard.image, {**idcard.PARAMS, "segnet": other})
    classic = find_quad(hard.image, {**idcard.PARAMS, "segnet": {}})
    assert found is not None and classic is not None
    assert np.allclose(found.corners, classic.corners)


def test_a_version_stored_before_the_segmenter_finds_as_it_did(
        tmp_path: Path, hard: idcard_synth.Sample) -> None:
    """An ``idd`` file without ``segnet`` (the fourth pass's parameters) loads: its
    missing plain numbers are the built-in ones, but no network is lent to it."""
    spec = catalog().kinds["idd"]
    assert spec.load is not None
    old = {k: v for k, v in idcard.PARAMS.items() if k not in ("segnet", "seg_gain")}
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    loaded = spec.load(tmp_path / "old.json")
    assert loaded["segnet"] == {} and loaded["seg_gain"] == idcard.PARAMS["seg_gain"]
    found = find_quad(hard.image, loaded)
    assert found is not None and corner_error(found.corners, hard.corners) > 0.1
    (tmp_path / "new.json").write_bytes(spec.make())  # type: ignore[misc]
    assert spec.load(tmp_path / "new.json")["segnet"] == idcard.PARAMS["segnet"]


def test_the_training_is_repeatable_and_its_weights_load() -> None:
    """Two short fits on the same few cards give the same packed weights, which
    unpack into the numpy network."""
    pytest.importorskip("torch")
    xs, ms = idcard_seg_train.examples(7000, 4)
    assert ms.any() and ms.mean() < 0.7
    a = idcard_seg_train.train(xs, ms, epochs=1, seed=0, log=False)
    assert a == idcard_seg_train.train(xs, ms, epochs=1, seed=0, log=False)
    layers = idcard_seg.unpack(a)
    assert layers is not None
    prob = idcard_seg.predict(_card(101, 0).image, layers)
    assert prob.shape == (idcard_seg.SIDE, idcard_seg.SIDE)
