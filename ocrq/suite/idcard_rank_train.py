"""Training the ``idd`` finder's candidate scorer (idcard_rank.py) on generated cards.

``python -m ocrq.suite.idcard_rank_train --seed 2024 --count 400`` draws cards
with idcard_synth.py (seeds of its own: never the evaluation's 13 or 29, nor
the tuning set's 1), runs the classic search on each, and labels every
shortlisted candidate by the corner error its refined quad would have. A
two-layer perceptron is fitted listwise (softmax over one image's candidates,
the target spread over those within ``--good`` of the diagonal) with a fixed
torch seed, on the CPU in a few minutes, and written as JSON
(idcard_ranker.py) that idcard.py folds into the ``idd`` parameters.
"""

from __future__ import annotations

import argparse
import json
import pickle
import textwrap
from pathlib import Path

import cv2
import numpy as np

from ocrq.evaluation.idcard_eval import corner_error
from ocrq.suite import idcard_synth
from ocrq.suite.idcard import PARAMS
from ocrq.suite.idcard_cv import _colour_gradient, _scaled, refined, search
from ocrq.suite.idcard_rank import Candidate, features, shortlist

OUT = Path(__file__).with_name("idcard_ranker.py")


Example = tuple[np.ndarray, list[Candidate], np.ndarray]


def examples(seed: int, count: int, p: dict) -> list[Example]:
    """Per card: its work copy (Lab), its shortlist, and the corner error each
    candidate's quad has once refined as the finder refines the one it picks."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        s = idcard_synth.generate(rng)
        small, scale = _scaled(s.image, int(p["work_side"]))
        lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB)
        gx, gy = _colour_gradient(lab)
        short = shortlist(search(lab, gx, gy, p), p)
        if not short:
            continue
        big, big_scale = _scaled(s.image, int(p["refine_side"]))
        bgx, bgy = _colour_gradient(cv2.cvtColor(big, cv2.COLOR_BGR2LAB))
        errs = [corner_error(refined(c.quad * (big_scale / scale), bgx, bgy, big_scale,
                                     p).corners, s.corners) for c in short]
        out.append((lab, short, np.asarray(errs)))
    return out


def featurised(data: list[Example], p: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for lab, short, errs in data:
        gx, gy = _colour_gradient(lab)
        out.append((features(short, lab, gx, gy, p), errs))
    return out


def train(data: list[tuple[np.ndarray, np.ndarray]], good: float, hidden: int,
          epochs: int, seed: int) -> dict:
    import torch  # training only: the finder runs the weights with numpy

    torch.manual_seed(seed)
    data = [(x, e) for x, e in data if (e <= good).any()]
    allx = np.concatenate([x for x, _ in data])
    mean, std = allx.mean(axis=0), allx.std(axis=0) + 1e-3
    # One padded batch: cards x candidates x features, padding masked out.
    n = max(len(x) for x, _ in data)
    xs = np.zeros((len(data), n, allx.shape[1]), np.float32)
    ts = np.zeros((len(data), n), np.float32)
    pad = np.ones((len(data), n), bool)
    for i, (x, e) in enumerate(data):
        xs[i, :len(x)] = (x - mean) / std
        ts[i, :len(x)] = (e <= good) / (e <= good).sum()
        pad[i, :len(x)] = False
    x_t, t_t, pad_t = torch.tensor(xs), torch.tensor(ts), torch.tensor(pad)
    net = torch.nn.Sequential(torch.nn.Linear(allx.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        logits = net(x_t)[..., 0].masked_fill(pad_t, -1e9)
        loss = -(t_t * torch.log_softmax(logits, 1)).sum(1).mean()
        loss.backward()
        opt.step()
    w1, b1, w2, b2 = (t.detach().numpy().astype(np.float64) for t in net.parameters())

    def r(a: np.ndarray) -> list:
        return np.round(a, 5).tolist()

    return {"mean": r(mean), "std": r(std), "w1": r(w1.T), "b1": r(b1), "w2": r(w2[0]),
            "b2": round(float(b2[0]), 5)}


def literal(net: dict) -> str:
    """``net`` as a Python literal in lines under 100 characters (JSON's numbers
    and lists are Python's)."""
    return "\n".join(textwrap.wrap(json.dumps(net, sort_keys=True), 90,
                                    break_long_words=False, break_on_hyphens=False))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--good", type=float, default=0.015)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    p = {k: v for k, v in PARAMS.items() if k != "ranker"}
    if args.cache and args.cache.exists():
        with args.cache.open("rb") as f:
            data = pickle.load(f)
    else:
        data = examples(args.seed, args.count, p)
        if args.cache:  # the slow part: later trainings start from here
            with args.cache.open("wb") as f:
                pickle.dump(data, f)
    net = train(featurised(data, p), args.good, args.hidden, args.epochs, seed=0)
    args.out.write_text(
        '"""The ``idd`` candidate scorer\'s weights (idcard_rank.py), written by\n'
        '``python -m ocrq.suite.idcard_rank_train``: do not edit."""\n\n'
        f"RANKER = {literal(net)}\n", encoding="utf-8")
    print(args.out)


if __name__ == "__main__":
    main()
