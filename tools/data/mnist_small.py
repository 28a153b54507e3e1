#!/usr/bin/env python3
"""A dataset that is not MNIST's shape, derived from the vendored MNIST in seconds: the
digits 0, 1 and 2, each 28x28 image brought to 14x14 with two channels per pixel (the
mean and the maximum of its 2x2 block), written as IDX files (idx4 images: N x 14 x 14 x 2,
idx1 labels 0-2) under the names `host-trainer --data DIR` reads.

Usage: tools/data/mnist_small.py OUT_DIR [TRAIN_IMAGES [TEST_IMAGES]]
(of MNIST's first TRAIN_IMAGES training and TEST_IMAGES test images, default 6000 and
3000, those showing 0, 1 or 2 are kept). The CI's "your own network and data" step uses it.
"""
import gzip
import os
import struct
import sys

MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist")
CLASSES = 3


def read(name):
    with gzip.open(os.path.join(MNIST, name + ".gz"), "rb") as f:
        return f.read()


def convert(images, labels, limit):
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803 and (rows, cols) == (28, 28), "MNIST images expected"
    assert struct.unpack(">II", labels[:8])[1] == n
    out, kept = bytearray(), bytearray()
    for i in range(min(n, limit)):
        label = labels[8 + i]
        if label >= CLASSES:
            continue
        img = images[16 + 784 * i : 16 + 784 * (i + 1)]
        for r in range(0, 28, 2):
            top, bottom = img[28 * r : 28 * r + 28], img[28 * r + 28 : 28 * r + 56]
            for c in range(0, 28, 2):
                block = (top[c], top[c + 1], bottom[c], bottom[c + 1])
                out.append((sum(block) + 2) // 4)
                out.append(max(block))
        kept.append(label)
    return out, kept


def write(path, header, body):
    with open(path, "wb") as f:
        f.write(header)
        f.write(body)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    limits = [int(a) for a in sys.argv[2:4]] + [6000, 3000][len(sys.argv[2:4]) :]
    os.makedirs(out, exist_ok=True)
    for split, limit in (("train", limits[0]), ("t10k", limits[1])):
        imgs, labels = convert(
            read(split + "-images-idx3-ubyte"), read(split + "-labels-idx1-ubyte"), limit
        )
        n = len(labels)
        write(os.path.join(out, split + "-images-idx4-ubyte"),
              struct.pack(">IIIII", 0x804, n, 14, 14, 2), imgs)
        write(os.path.join(out, split + "-labels-idx1-ubyte"), struct.pack(">II", 0x801, n), labels)
        print(f"{split}: {n} images of 14x14x2, classes 0-{CLASSES - 1}")


if __name__ == "__main__":
    main()
