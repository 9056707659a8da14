"""Build the image example: a small CNN on scikit-learn's handwritten digits.

Data: the "Optical Recognition of Handwritten Digits" data set (Alpaydin and Kaynak, UCI Machine Learning
Repository, 1998) as shipped inside scikit-learn (``sklearn.datasets.load_digits``; no download): 1,797 grey
images of 8x8 pixels with values 0-16, ten classes. They are stored here as 8-bit 8x8 arrays (``x``, ``y`` in
``image/train.npz`` and ``image/test.npz``); the policy's ``data.preprocess`` upsamples them to 16x16 and
standardises them, with the same code (``audit.artifacts.images``) the training below uses.

Model: ``digits_cnn.DigitsCNN`` (two convolution blocks with batch norm, dropout), trained with Adam for a few
seconds on one CPU thread; weights in ``image/model.pt`` (a state dict).

Run: python policies/examples/train_image.py [--out DIR] [--seed N]. Same seed, same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))  # the repository, for audit.artifacts.images

from digits_cnn import DigitsCNN  # noqa: E402

from audit.artifacts.images import Preprocessing, resize, standardise  # noqa: E402

SIZE = 16
MEAN, STD = 0.3, 0.4  # as in image.yaml's data.preprocess (close to the training data's mean and std)


def model_inputs(x8: np.ndarray) -> np.ndarray:
    """8-bit (N, 8, 8) digits -> (N, 1, 16, 16) float32 model inputs, exactly as the audit preprocesses them."""
    prep = Preprocessing(size=(SIZE, SIZE), channels=1, mean=np.array([MEAN], np.float32),
                         std=np.array([STD], np.float32))
    raw = resize(x8[..., None].astype(np.float32) / 255.0, (SIZE, SIZE))
    return standardise(raw, prep)


def main() -> None:
    """Split, train, and write train.npz, test.npz and model.pt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "image")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    digits = load_digits()
    x8 = np.round(digits.images * (255 / 16)).astype(np.uint8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x8, y, test_size=0.2, random_state=args.seed, stratify=y)

    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(model_inputs(x_tr)), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        net.train()
        for batch in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.from_numpy(model_inputs(x_te))).argmax(1).numpy() == y_te).mean()

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "train.npz", x=x_tr, y=y_tr)
    np.savez_compressed(args.out / "test.npz", x=x_te, y=y_te)
    torch.save(net.state_dict(), args.out / "model.pt")
    print(f"wrote {args.out}: {len(y_tr)} train and {len(y_te)} test images; test accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
