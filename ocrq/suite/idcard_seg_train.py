"""Training the ``idd`` finder's card segmenter (idcard_seg.py) on generated cards.

``python -m ocrq.suite.idcard_seg_train --seed 7000 --parts 3 --count 1200`` draws cards
with idcard_synth.py from seeds of its own (7000 and up: never the evaluation's
13, 29, 41, 57, 83, the tuning set's 1-6 nor the scorer's 2024), shrinks each
image to idcard_seg.STORE square and keeps the card's true corners; the
network's input (SIDE square) and its target (at the mask's half resolution, the
share of each pixel the card's quad covers: ``targets``) are made from those. A
small convolutional network (idcard_seg.LAYOUT) is fitted with a fixed torch seed
on the CPU and written as JSON (idcard_segnet.json, package data; float16 packed
in base64) that idcard.py folds into the ``idd`` parameters. Drawing is the slow
part (~0.35 s a card on one free core): ``--part K`` draws one part into ``--cache`` (run them in
parallel), a run without ``--part`` trains on the parts found there (the shipped
weights: 3 x 1200 cards, 18 epochs, 835 s on one thread of the shared machine).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrq.suite import idcard_synth
from ocrq.suite.idcard_seg import FORMAT, LAYOUT, SIDE, STORE, scaled_input, torch_net

OUT = Path(__file__).with_name("idcard_segnet.json")
BATCH = 32


def examples(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` generated cards: (N x STORE x STORE x 3 uint8 images, N x 4 x 2 corners
    as shares of the image's width and height, pixel edges at 0 and 1)."""
    rng = np.random.default_rng(seed)
    xs = np.zeros((count, STORE, STORE, 3), np.uint8)
    cs = np.zeros((count, 4, 2), np.float32)
    for i in range(count):
        s = idcard_synth.generate(rng)
        h, w = s.image.shape[:2]
        xs[i] = cv2.resize(s.image, (STORE, STORE), interpolation=cv2.INTER_AREA)
        cs[i] = (s.corners + 0.5) / np.array([w, h])
    return xs, cs


def targets(cs: np.ndarray, side: int) -> np.ndarray:
    """The card's quad on a ``side`` square, each pixel the share of it the card covers:
    where the side lies within a pixel is what the finder needs from the mask. Filled
    at 8x and averaged down (OpenCV's anti-aliased fill is half a pixel too fat all
    round: the card 8% too large at 80 px, and a network trained on it the same)."""
    out = np.zeros((len(cs), side, side), np.float32)
    fine = np.zeros((side * 8, side * 8), np.uint8)
    for i, c in enumerate(cs):
        fine[:] = 0
        pts = np.round((c * side * 8 - 0.5) * 8).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(fine, [pts], 1, cv2.LINE_8, shift=3)
        out[i] = cv2.resize(fine.astype(np.float32), (side, side),
                            interpolation=cv2.INTER_AREA)
    return out


def _augmented(x: Any, m: Any, gen: Any) -> tuple[Any, Any]:
    """Mirror images, a card turned on its side, other inks and light are cards too."""
    import torch  # training only

    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = x.flip(3), m.flip(3)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = x.flip(2), m.flip(2)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = x.transpose(2, 3), m.transpose(2, 3)
    x = x[:, torch.randperm(3, generator=gen)]
    gain = 0.7 + 0.6 * torch.rand(len(x), 1, 1, 1, generator=gen)
    shift = 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5)
    return ((x + 0.5) * gain - 0.5 + shift).clamp(-0.5, 0.5), m


def _loss(logit: Any, m: Any) -> Any:
    """BCE, three times heavier within a few pixels of the card's outline (where the
    finder reads the sides from), plus Dice (the card is one region)."""
    import torch  # training only

    pool = torch.nn.functional.max_pool2d
    band = (pool(m, 5, 1, 2) - (-pool(-m, 5, 1, 2)) > 0.01).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logit, m, weight=1 + 2 * band)
    prob = torch.sigmoid(logit)
    inter = (prob * m).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + m.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def train(xs: np.ndarray, cs: np.ndarray, epochs: int, seed: int,
          log: bool = True) -> dict[str, Any]:
    """Fitted weights, packed, from STORE-square images and their corners."""
    import torch  # training only: the finder runs the weights in ONNX Runtime

    # One thread: on a shared machine two threads of these small convolutions spend
    # most of their time waiting for each other (an epoch took 3x longer).
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torch_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * ((len(xs) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    x_all = torch.tensor(np.stack([scaled_input(x) for x in xs]))
    m_all = torch.tensor(targets(cs, SIDE // 2))[:, None]
    t0 = time.time()
    for ep in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        total = 0.0
        for k in range(0, len(xs), BATCH):
            idx = order[k:k + BATCH]
            x, m = _augmented(x_all[idx], m_all[idx], gen)
            loss = _loss(net(x), m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            print(f"epoch {ep + 1}/{epochs} loss {total / len(xs):.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    return pack(net)


def pack(net: object) -> dict[str, Any]:
    """The network's tensors, in LAYOUT's order, as one float16 base64 string."""
    tensors = [t.detach().numpy().astype(np.float16).ravel()  # type: ignore[attr-defined]
               for t in net.parameters()]  # type: ignore[attr-defined]
    blob = np.concatenate(tensors).tobytes()
    return {"format": FORMAT, "side": SIDE, "layout": [list(x) for x in LAYOUT],
            "fp16": base64.b64encode(blob).decode("ascii")}


def _part(seed: int, count: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    path = cache / f"cards{seed}x{count}s{STORE}.npz" if cache else None
    if path and path.exists():
        data = np.load(path)
        return data["xs"], data["cs"]
    xs, cs = examples(seed, count)
    if path:  # the slow part: later trainings (and parallel draws) start here
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, xs=xs, cs=cs)
    return xs, cs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--parts", type=int, default=3, help="cards drawn from seeds SEED..")
    ap.add_argument("--count", type=int, default=1200, help="cards per part")
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--cache", type=Path, default=None, help="folder: parts kept here")
    ap.add_argument("--part", type=int, default=None, help="only draw this part (cache)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    todo = [args.part] if args.part is not None else list(range(args.parts))
    parts = [_part(args.seed + k, args.count, args.cache) for k in todo]
    if args.part is not None:
        return
    seg = train(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                args.epochs, seed=0)
    args.out.write_text(json.dumps(seg, sort_keys=True) + "\n", encoding="utf-8")
    print(args.out)


if __name__ == "__main__":
    main()
