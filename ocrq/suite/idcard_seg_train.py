"""Training the ``idd`` finder's card segmenter (idcard_seg.py) on generated cards.

``python -m ocrq.suite.idcard_seg_train --seed 7000 --parts 2 --count 1200`` draws cards
with idcard_synth.py from seeds of its own (7000 and up: never the evaluation's
13, 29, 41, 57, the tuning set's 1, 2, 3 nor the scorer's 2024), shrinks each
image to the network's input square and draws the card's true quad as the
target mask. A small convolutional network (idcard_seg.LAYOUT, 58k numbers)
is fitted with a fixed torch seed on the CPU and written as JSON
(idcard_segnet.json, package data; float16 packed in base64) that idcard.py
folds into the ``idd`` parameters. On the shared two-core machine: drawing the 2400 cards
~13 minutes in one process (``--part 0`` and ``--part 1`` draw the halves in
parallel into ``--cache``), the 12 epochs ~12 minutes.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

import cv2
import numpy as np

from ocrq.suite import idcard_synth
from ocrq.suite.idcard_seg import LAYOUT, SIDE, net_input, torch_net

OUT = Path(__file__).with_name("idcard_segnet.json")


def examples(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` generated cards as (N x 3 x SIDE x SIDE float16 input, N x SIDE x
    SIDE uint8 mask of the card's quad)."""
    rng = np.random.default_rng(seed)
    xs = np.zeros((count, 3, SIDE, SIDE), np.float16)
    ms = np.zeros((count, SIDE, SIDE), np.uint8)
    for i in range(count):
        s = idcard_synth.generate(rng)
        h, w = s.image.shape[:2]
        xs[i] = net_input(s.image)
        pts = s.corners * np.array([SIDE / w, SIDE / h])
        # Drawn at 8x sub-pixel precision: the side's place matters to a pixel.
        cv2.fillPoly(ms[i], [np.round(pts * 8).astype(np.int32).reshape(-1, 1, 2)], 1,
                     cv2.LINE_AA, shift=3)
    return xs, ms


def train(xs: np.ndarray, ms: np.ndarray, epochs: int, seed: int, log: bool = True) -> dict:
    import torch  # training only: the finder runs the weights with numpy

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torch_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    steps = epochs * ((len(xs) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    x_all = torch.tensor(xs.astype(np.float32))
    m_all = torch.tensor(ms.astype(np.float32))[:, None]
    t0 = time.time()
    for ep in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        total = 0.0
        for k in range(0, len(xs), 32):
            idx = order[k:k + 32]
            x, m = x_all[idx], m_all[idx]
            # Mirror images are cards too: flips double what the set shows.
            if torch.rand(1, generator=gen).item() < 0.5:
                x, m = x.flip(3), m.flip(3)
            if torch.rand(1, generator=gen).item() < 0.5:
                x, m = x.flip(2), m.flip(2)
            logit = net(x)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, m)
            prob = torch.sigmoid(logit)
            inter = (prob * m).sum((1, 2, 3))
            dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + m.sum((1, 2, 3)) + 1)
            loss = bce + dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            print(f"epoch {ep + 1}/{epochs} loss {total / len(xs):.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    return pack(net)


def pack(net: object) -> dict:
    """The network's tensors, in LAYOUT's order, as one float16 base64 string."""
    tensors = [t.detach().numpy().astype(np.float16).ravel()  # type: ignore[attr-defined]
               for t in net.parameters()]  # type: ignore[attr-defined]
    blob = np.concatenate(tensors).tobytes()
    return {"format": "ocrq-idcard-seg/1", "side": SIDE, "layout": [list(x) for x in LAYOUT],
            "fp16": base64.b64encode(blob).decode("ascii")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--parts", type=int, default=2, help="cards drawn from seeds SEED..")
    ap.add_argument("--count", type=int, default=1200, help="cards per part")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--cache", type=Path, default=None, help="folder: parts kept here")
    ap.add_argument("--part", type=int, default=None, help="only draw this part (cache)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    todo = [args.part] if args.part is not None else list(range(args.parts))
    xs, ms = [], []
    for k in todo:
        path = args.cache / f"part{args.seed + k}x{args.count}.npz" if args.cache else None
        if path and path.exists():
            data = np.load(path)
            x, m = data["xs"], data["ms"]
        else:
            x, m = examples(args.seed + k, args.count)
            if path:  # the slow part: later trainings (and parallel draws) start here
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, xs=x, ms=m)
        xs.append(x)
        ms.append(m)
    if args.part is not None:
        return
    seg = train(np.concatenate(xs), np.concatenate(ms), args.epochs, seed=0)
    args.out.write_text(json.dumps(seg, sort_keys=True) + "\n", encoding="utf-8")
    print(args.out)


if __name__ == "__main__":
    main()
