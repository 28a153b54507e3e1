"""Writes host-trainer/tests/images/: MNIST test images dressed up as pictures a user
might have (larger, dark on light, coloured, off-centre, transparent, JPEG), for
`host-trainer predict` and its test. Run from the repository root:

    python3 tools/samples/make_samples.py      (needs numpy and pillow)

The file names start with the true digit; the test set index is in the name too.
"""
import gzip
import pathlib

import numpy as np
from PIL import Image

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "host-trainer" / "tests" / "images"
out.mkdir(parents=True, exist_ok=True)
raw = gzip.open(root / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").read()
labels = gzip.open(root / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").read()[8:]
images = np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 28, 28)


def digit(i):
    return Image.fromarray(images[i])


def name(i, what, ext):
    return out / f"{labels[i]}-test{i}-{what}.{ext}"


# 0: a 7, black ink on white paper, 5x larger, placed off-centre on a wide sheet.
i = 0
big = digit(i).resize((140, 140), Image.BILINEAR)
sheet = Image.new("L", (260, 180), 245)
sheet.paste(Image.eval(big, lambda v: 255 - v), (20, 30))
sheet.save(name(i, "dark-on-paper", "png"))

# 1: a 2, blue ink on beige paper, colour JPEG, not square.
i = 1
g = np.asarray(digit(i).resize((112, 112), Image.BILINEAR), dtype=np.float32) / 255.0
paper = np.array([238, 228, 205], dtype=np.float32)
ink = np.array([30, 50, 160], dtype=np.float32)
rgb = paper * (1 - g[..., None]) + ink * g[..., None]
canvas = np.tile(paper, (150, 130, 1))
canvas[20:132, 10:122] = rgb
Image.fromarray(canvas.astype(np.uint8), "RGB").save(name(i, "blue-ink", "jpg"), quality=85)

# 2: a 1, exactly as MNIST stores it, binary PGM.
i = 2
digit(i).save(name(i, "mnist", "pgm"))

# 3: a 0, black strokes on a transparent background (grey + alpha PNG).
i = 3
a = digit(i).resize((84, 84), Image.BILINEAR)
la = Image.merge("LA", (Image.new("L", a.size, 0), a))
la.save(name(i, "transparent", "png"))

# 4: a 4, white chalk on a dark green board, small and noisy.
i = 4
rng = np.random.default_rng(4)
g = np.asarray(digit(i), dtype=np.float32) / 255.0
board = np.array([40, 70, 50], dtype=np.float32)
chalk = np.array([235, 235, 225], dtype=np.float32)
rgb = board * (1 - g[..., None]) + chalk * g[..., None] + rng.normal(0, 8, (28, 28, 3))
Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").resize((56, 56), Image.NEAREST).save(
    name(i, "chalk", "png")
)
print("wrote", sorted(p.name for p in out.iterdir()))
