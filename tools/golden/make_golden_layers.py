"""Golden reference values for microconv's MobileNet-style layers, from TensorFlow.

Two fixed tiny networks (TensorFlow NHWC layout, float32 everywhere; depthwise
weights [kh, kw, cin, multiplier] as tf.nn.depthwise_conv2d takes them, output
channel ci*multiplier + j; dense weights [in, out]):

"train" -- batch normalization in training mode (batch statistics):

    x [2,8,8,3]
    L0 depthwise 3x3, stride 1, SAME, multiplier 2, +bias  -> [2,8,8,6]
    L1 batchnorm, keras BatchNormalization(momentum=0.9, epsilon=1e-3),
       called with training=True                           -> [2,8,8,6]
    L2 relu6
    L3 average pool 2x2, stride 2, VALID                   -> [2,4,4,6]
    L4 depthwise 3x3, stride 2, SAME, multiplier 1, +bias  -> [2,2,2,6]
       (SAME on 4 with stride 2: no padding before, one row/column after)
    L5 global average pool                                 -> [2,6]
    L6 dense 6->3, +bias                                   -> logits [2,3]

"eval" -- batch normalization in inference mode (running statistics), and a
SAME average pool whose border windows hold 4 or 6 of their 9 positions:

    x [2,9,9,2]
    L0 depthwise 3x3, stride 2, VALID, multiplier 3, +bias -> [2,4,4,6]
    L1 batchnorm (momentum 0.99, epsilon 1e-3), training=False
    L2 relu6
    L3 average pool 3x3, stride 1, SAME                    -> [2,4,4,6]
    L4 global average pool                                 -> [2,6]
    L5 dense 6->3, +bias                                   -> logits [2,3]

Both with labels [2, 0] and the loss mean(softmax_cross_entropy_with_logits).
Recorded per case: the input, the parameters (batchnorm: gamma, beta, moving
mean, moving variance), every layer's output, the loss, its gradients
(tf.GradientTape) w.r.t. the input and every trainable parameter, and, for
"train", the batchnorm layer's moving mean and variance after the call (Keras
updates them as r = momentum * r + (1 - momentum) * batch statistic, with the
biased batch variance).

Values come from numpy RandomState(seed), seeds 4321, 4322, ... per case (the
"eval" case starts at 8765): the first seed for which no ReLU6 input is within
1e-4 of 0 or 6 and some ReLU6 inputs lie below 0 and above 6 (so that both
clips are exercised).  The seeds used are recorded in the JSON.

Output: ../../core/tests/data/golden_layers.json (relative to this file);
tensors are {"shape": [...], "data": [flat row-major float32 values]}, each
value written as the shortest decimal that reads back as the same float32.

Run from the repository root (a venv outside the repository works as well):
    python3 -m venv .venv && .venv/bin/pip install -r tools/golden/requirements.txt \
        && .venv/bin/python tools/golden/make_golden_layers.py

CI never runs this script; the generated JSON is checked in and read by
core/tests/golden_layers.rs.
"""
import json
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import keras
import numpy as np
import tensorflow as tf

tf.config.experimental.enable_op_determinism()

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../core/tests/data/golden_layers.json")
LABELS = [2, 0]
MARGIN = 1e-4

# Per case: input shape, seed to start from, batchnorm momentum, training flag,
# parameter (name, shape, how drawn) in microconv's order, layer names.
CASES = {
    "train": {
        "input": (2, 8, 8, 3), "seed": 4321, "momentum": 0.9, "training": True,
        "params": [("dw0_w", (3, 3, 3, 2), ("normal", 0.0, 0.5)), ("dw0_b", (6,), ("normal", 0.0, 0.1)),
                   ("bn1_gamma", (6,), ("uniform", 2.0, 3.5)), ("bn1_beta", (6,), ("uniform", 0.5, 2.0)),
                   ("bn1_mean", (6,), ("normal", 0.0, 0.3)), ("bn1_var", (6,), ("uniform", 0.5, 1.5)),
                   ("dw4_w", (3, 3, 6, 1), ("normal", 0.0, 0.5)), ("dw4_b", (6,), ("normal", 0.0, 0.1)),
                   ("dense6_w", (6, 3), ("normal", 0.0, 0.5)), ("dense6_b", (3,), ("normal", 0.0, 0.1))],
        "layers": ["depthwise0", "batchnorm1", "relu6_2", "avgpool3", "depthwise4", "global_avgpool5", "dense6"],
    },
    "eval": {
        "input": (2, 9, 9, 2), "seed": 8765, "momentum": 0.99, "training": False,
        "params": [("dw0_w", (3, 3, 2, 3), ("normal", 0.0, 0.6)), ("dw0_b", (6,), ("normal", 0.0, 0.1)),
                   ("bn1_gamma", (6,), ("uniform", 2.0, 3.5)), ("bn1_beta", (6,), ("uniform", 0.5, 2.0)),
                   ("bn1_mean", (6,), ("normal", 0.0, 0.3)), ("bn1_var", (6,), ("uniform", 0.3, 1.0)),
                   ("dense5_w", (6, 3), ("normal", 0.0, 0.5)), ("dense5_b", (3,), ("normal", 0.0, 0.1))],
        "layers": ["depthwise0", "batchnorm1", "relu6_2", "avgpool3", "global_avgpool4", "dense5"],
    },
}
EPSILON = 1e-3


def make_values(case, seed):
    rs = np.random.RandomState(seed)
    x = rs.uniform(0.0, 1.0, case["input"]).astype(np.float32)
    p = {}
    for name, shape, (kind, a, b) in case["params"]:
        v = rs.normal(a, b, shape) if kind == "normal" else rs.uniform(a, b, shape)
        p[name] = v.astype(np.float32)
    return x, p


def make_bn(case, p):
    bn = keras.layers.BatchNormalization(momentum=case["momentum"], epsilon=EPSILON)
    bn.build((None, None, None, 6))
    bn.set_weights([p["bn1_gamma"], p["bn1_beta"], p["bn1_mean"], p["bn1_var"]])
    return bn


def forward(name, x, p, bn):
    """The case's layer outputs; `bn` is the Keras layer holding the batchnorm parameters."""
    case = CASES[name]
    a0 = tf.nn.depthwise_conv2d(x, p["dw0_w"], [1, 1, 1, 1] if name == "train" else [1, 2, 2, 1],
                                "SAME" if name == "train" else "VALID") + p["dw0_b"]
    a1 = bn(a0, training=case["training"])
    a2 = tf.nn.relu6(a1)
    if name == "train":
        a3 = tf.nn.avg_pool2d(a2, ksize=2, strides=2, padding="VALID")
        a4 = tf.nn.depthwise_conv2d(a3, p["dw4_w"], [1, 2, 2, 1], "SAME") + p["dw4_b"]
        a5 = tf.reduce_mean(a4, axis=[1, 2])
        a6 = tf.matmul(a5, p["dense6_w"]) + p["dense6_b"]
        return [a0, a1, a2, a3, a4, a5, a6]
    a3 = tf.nn.avg_pool2d(a2, ksize=3, strides=1, padding="SAME")
    a4 = tf.reduce_mean(a3, axis=[1, 2])
    a5 = tf.matmul(a4, p["dense5_w"]) + p["dense5_b"]
    return [a0, a1, a2, a3, a4, a5]


def degenerate(name, x, p):
    acts = forward(name, tf.constant(x), p, make_bn(CASES[name], p))
    r = acts[1].numpy()
    near = np.any(np.abs(r) <= MARGIN) or np.any(np.abs(r - 6.0) <= MARGIN)
    return near or not (np.any(r < 0.0) and np.any(r > 6.0))


def t(arr):
    arr = np.asarray(arr, dtype=np.float32)
    # str() of a numpy float32 is the shortest decimal that reads back as that float32.
    return {"shape": list(arr.shape), "data": [float(str(v)) for v in arr.ravel()]}


def run_case(name):
    case = CASES[name]
    seed = case["seed"]
    while True:
        x_np, p_np = make_values(case, seed)
        if not degenerate(name, x_np, p_np):
            break
        seed += 1

    y = tf.one_hot(LABELS, 3, dtype=tf.float32)
    x = tf.Variable(x_np)
    bn = make_bn(case, p_np)
    trainable = {k: tf.Variable(v) for k, v in p_np.items() if not k.startswith("bn1_")}
    with tf.GradientTape() as tape:
        p = {**trainable, "bn1_gamma": bn.gamma, "bn1_beta": bn.beta}
        acts = forward(name, x, p, bn)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=acts[-1]))
    sources = {"input": x, **trainable, "bn1_gamma": bn.gamma.value, "bn1_beta": bn.beta.value}
    grads = tape.gradient(loss, sources)

    out = {"seed": seed, "momentum": case["momentum"], "epsilon": EPSILON, "training": case["training"],
           "input": t(x_np), "labels": LABELS,
           "param_order": [n for n, _, _ in case["params"]],
           "params": {k: t(v) for k, v in p_np.items()},
           "activations": [{"layer": i, "name": n, **t(a.numpy())}
                           for i, (n, a) in enumerate(zip(case["layers"], acts))],
           "loss": float(str(np.float32(loss.numpy()))),
           "grads": {k: t(g.numpy()) for k, g in grads.items()}}
    if case["training"]:
        out["running_after"] = {"bn1_mean": t(bn.moving_mean.numpy()), "bn1_var": t(bn.moving_variance.numpy())}
    r = acts[1].numpy()
    maxes = ", ".join(f"{k} {np.max(np.abs(g.numpy())):.3g}" for k, g in grads.items())
    print(f"{name}: seed {seed}, loss {loss.numpy():.7g}, relu6 inputs <0: {np.sum(r < 0)}, >6: {np.sum(r > 6)}"
          f" of {r.size}\n  max|grad|: {maxes}")
    return out


def main():
    out = {"tensorflow": tf.__version__, "keras": keras.__version__}
    out.update({name: run_case(name) for name in CASES})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, allow_nan=False)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
