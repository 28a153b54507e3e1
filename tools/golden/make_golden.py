"""Golden reference values for microconv, computed with TensorFlow.

Builds a fixed tiny conv-net (TensorFlow NHWC layout, conv weights HWIO
[kh, kw, cin, cout], dense weights [in, out], float32 everywhere):

    x [2,7,7,2]
    L0 conv2d 3x3, stride 2, SAME, 2->4, +bias   -> [2,4,4,4]
    L1 relu
    L2 max-pool 3x3, stride 2, SAME               -> [2,2,2,4]
    L3 conv2d 2x2, stride 1, VALID, 4->5, +bias   -> [2,1,1,5]
    L4 relu
    L5 flatten                                    -> [2,5]
    L6 dense 5->3, +bias (x @ W + b)              -> logits [2,3]

with labels [2, 0] (one-hot y), and records every layer's output plus, for
three losses ("naive" sum(-y*log(softmax+1e-10)), "log_softmax"
sum(-y*log_softmax), "fused" mean(softmax_cross_entropy_with_logits)),
the loss value and its gradient (tf.GradientTape) w.r.t. the input and every
weight and bias.  A "big_logits" case repeats the losses with every weight and
bias multiplied by 40.0 (float32 multiply) and records only the gradients
w.r.t. the logits, showing the naive loss saturating.

Values come from numpy RandomState(seed), seed = 1234, 1235, ... : the first
seed for which every max-pool window has a unique maximum (margin > 1e-4 over
the runner-up), no ReLU input is within 1e-4 of zero, and each sample has a
non-zero L4 output.  The seed used is recorded in the JSON.

Output: ../../core/tests/data/golden.json (relative to this file); tensors
are {"shape": [...], "data": [flat row-major float32 values]}.

Run from the repository root:
    python3 -m venv .venv && .venv/bin/pip install -r tools/golden/requirements.txt \
        && .venv/bin/python tools/golden/make_golden.py

CI never runs this script; the generated JSON is checked in.
"""
import json
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np
import tensorflow as tf

tf.config.experimental.enable_op_determinism()

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../core/tests/data/golden.json")
LABELS = [2, 0]
PARAM_NAMES = ["conv0_w", "conv0_b", "conv3_w", "conv3_b", "dense6_w", "dense6_b"]
LAYER_NAMES = ["conv0", "relu1", "maxpool2", "conv3", "relu4", "flatten5", "dense6"]
MARGIN = 1e-4
BIG_SCALE = 40.0


def make_values(seed):
    rs = np.random.RandomState(seed)
    x = rs.uniform(0.0, 1.0, (2, 7, 7, 2))
    shapes = [((3, 3, 2, 4), 0.5), ((4,), 0.1), ((2, 2, 4, 5), 0.5), ((5,), 0.1), ((5, 3), 0.5), ((3,), 0.1)]
    params = [rs.normal(0.0, s, shape) for shape, s in shapes]
    return x.astype(np.float32), {n: p.astype(np.float32) for n, p in zip(PARAM_NAMES, params)}


def forward(x, p):
    """Returns (pre-activations of L0 and L3, list of layer outputs L0..L6)."""
    a0 = tf.nn.conv2d(x, p["conv0_w"], strides=2, padding="SAME") + p["conv0_b"]
    a1 = tf.nn.relu(a0)
    a2 = tf.nn.max_pool2d(a1, ksize=3, strides=2, padding="SAME")
    a3 = tf.nn.conv2d(a2, p["conv3_w"], strides=1, padding="VALID") + p["conv3_b"]
    a4 = tf.nn.relu(a3)
    a5 = tf.reshape(a4, [a4.shape[0], -1])
    a6 = tf.matmul(a5, p["dense6_w"]) + p["dense6_b"]
    return [a0, a1, a2, a3, a4, a5, a6]


def degenerate(x, p):
    acts = [a.numpy() for a in forward(tf.constant(x), {k: tf.constant(v) for k, v in p.items()})]
    a1 = acts[1]
    # SAME pool on 4x4 with 3x3/stride 2: pad 0 before, 1 after -> windows [0:3] and [2:4].
    for r0, r1 in [(0, 3), (2, 4)]:
        for c0, c1 in [(0, 3), (2, 4)]:
            win = np.sort(a1[:, r0:r1, c0:c1, :].reshape(2, -1, 4), axis=1)
            if np.any(win[:, -1, :] - win[:, -2, :] <= MARGIN):
                return True
    near_zero = any(np.any(np.abs(acts[i]) <= MARGIN) for i in (0, 3))
    return near_zero or np.any(np.all(acts[4].reshape(2, -1) == 0, axis=1))


def losses(logits, y):
    return {
        "naive": tf.reduce_sum(-y * tf.math.log(tf.nn.softmax(logits) + 1e-10)),
        "log_softmax": tf.reduce_sum(-y * tf.nn.log_softmax(logits)),
        "fused": tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)),
    }


def t(arr):
    arr = np.asarray(arr, dtype=np.float32)
    return {"shape": list(arr.shape), "data": [float(v) for v in arr.ravel()]}


def main():
    seed = 1234
    while True:
        x_np, p_np = make_values(seed)
        if not degenerate(x_np, p_np):
            break
        seed += 1

    y = tf.one_hot(LABELS, 3, dtype=tf.float32)
    x = tf.Variable(x_np)
    params = {k: tf.Variable(v) for k, v in p_np.items()}
    sources = {"input": x, **params}

    out = {"seed": seed, "tensorflow": tf.__version__, "input": t(x_np), "labels": LABELS,
           "params": {k: t(v) for k, v in p_np.items()}}
    acts = forward(x, params)
    out["activations"] = [{"layer": i, "name": n, **t(a)} for i, (n, a) in enumerate(zip(LAYER_NAMES, acts))]

    print(f"seed {seed}, tensorflow {tf.__version__}")
    out["losses"] = {}
    for name in ["naive", "log_softmax", "fused"]:
        with tf.GradientTape() as tape:
            loss = losses(forward(x, params)[-1], y)[name]
        grads = tape.gradient(loss, sources)
        out["losses"][name] = {"value": float(np.float32(loss.numpy())),
                               "grads": {k: t(g.numpy()) for k, g in grads.items()}}
        maxes = ", ".join(f"{k} {np.max(np.abs(g.numpy())):.3g}" for k, g in grads.items())
        print(f"  {name:12s} loss {loss.numpy():.7g}   max|grad|: {maxes}")

    big_p = {k: v * np.float32(BIG_SCALE) for k, v in p_np.items()}
    big_logits = forward(tf.constant(x_np), {k: tf.constant(v) for k, v in big_p.items()})[-1]
    big = {"scale": BIG_SCALE, "logits": t(big_logits.numpy()), "losses": {}}
    print(f"big logits (scale {BIG_SCALE}): {np.round(big_logits.numpy(), 1).tolist()}")
    for name in ["naive", "log_softmax", "fused"]:
        with tf.GradientTape() as tape:
            tape.watch(big_logits)
            loss = losses(big_logits, y)[name]
        g = tape.gradient(loss, big_logits).numpy()
        big["losses"][name] = {"value": float(np.float32(loss.numpy())), "dlogits": t(g)}
        print(f"  {name:12s} loss {loss.numpy():.7g}   max|dlogits| {np.max(np.abs(g)):.3g}")
    out["big_logits"] = big

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, allow_nan=False)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
