"""Side-by-side speed and memory: microconv against TensorFlow and PyTorch.

Runs the same networks with the same shapes, batch, loss, optimizer and data in
TensorFlow (graph mode, tf.function), PyTorch (eager, the way people train) and
microconv (`host-trainer bench --json`), each configuration in its own process,
and prints one table with the ratios microconv / framework.

    python3 tools/bench/reference.py                # quiet machine
    python3 tools/bench/reference.py --busy         # another process keeps one core busy
    python3 tools/bench/reference.py --safetensors runs/small.safetensors
                                                    # PyTorch loads an export, same accuracy?

The script installs TensorFlow and PyTorch (tools/bench/requirements.txt, pinned)
into a virtual environment (tools/bench/.venv, or --venv DIR) the first time and
re-runs itself there. CI never runs it.

Networks (NHWC in TensorFlow and microconv, NCHW in PyTorch; SAME padding, ReLU
after every convolution and hidden dense layer, 2x2 max-pool stride 2 SAME):
  small: conv5x5 8, pool, conv5x5 16, pool, conv3x3 32, pool, dense 10 (13,194 params)
  seed:  conv5x5 32, pool, conv5x5 64, pool, dense 1024, dropout(keep 0.75), dense 10
         (3,274,634 params)
A training step is forward, softmax cross-entropy (mean over the batch), backward and
an Adam update (lr 1e-3) on a batch of 128 real MNIST training images already in
memory (eight batches, cycled). Inference is the 10,000 test images in batches of 256
(images per second) and single images (median latency, one thread).
Peak memory is the process' peak resident set (ru_maxrss / VmHWM), data included.
"""
import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "data", "mnist")


def ensure_venv(venv):
    """Re-runs this script inside `venv`, creating it and installing the pins first."""
    py = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return
    if not os.path.exists(py):
        print(f"creating {venv} and installing tools/bench/requirements.txt (a few GB)...", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements.txt")])
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def load_idx(name):
    with gzip.open(os.path.join(DATA, name + ".gz"), "rb") as f:
        raw = f.read()
    import numpy as np
    ndims = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def batches(images, labels, batch, count=8):
    import numpy as np
    out = []
    for b in range(count):
        idx = [(b * batch + i) % len(images) for i in range(batch)]
        out.append((images[idx].astype(np.float32) / 255.0, labels[idx].astype(np.int64)))
    return out


def percentiles(times):
    times = sorted(times)
    pick = lambda q: times[min(len(times) - 1, round((len(times) - 1) * q))]
    return pick(0.5), pick(0.1), pick(0.9)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- TensorFlow
def run_tf(arch, threads, batch, steps, warmup, infer):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    L = tf.keras.layers
    he = tf.keras.initializers.HeNormal(seed=1)
    conv = lambda f, k: L.Conv2D(f, k, padding="same", activation="relu", kernel_initializer=he)
    pool = lambda: L.MaxPool2D(2, 2, padding="same")
    if arch == "small":
        layers = [conv(8, 5), pool(), conv(16, 5), pool(), conv(32, 3), pool(), L.Flatten(), L.Dense(10)]
    else:
        layers = [conv(32, 5), pool(), conv(64, 5), pool(), L.Flatten(),
                  L.Dense(1024, activation="relu", kernel_initializer=he), L.Dropout(0.25), L.Dense(10)]
    model = tf.keras.Sequential([tf.keras.Input((28, 28, 1))] + layers)
    opt = tf.keras.optimizers.Adam(1e-3)
    lossf = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = lossf(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    train_x, train_y = load_idx("train-images-idx3-ubyte"), load_idx("train-labels-idx1-ubyte")
    bs = [(tf.constant(x.reshape(-1, 28, 28, 1)), tf.constant(y)) for x, y in batches(train_x, train_y, batch)]
    times = []
    for s in range(warmup + steps):
        x, y = bs[s % len(bs)]
        t = time.perf_counter()
        step(x, y).numpy()
        if s >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    rec = dict(zip(("step_ms", "step_ms_p10", "step_ms_p90"), percentiles(times)))
    rec.update(infer_images_per_s=0.0, latency_us=0.0)
    if infer:
        test_x = load_idx("t10k-images-idx3-ubyte").astype(np.float32).reshape(-1, 28, 28, 1) / 255.0
        fwd = tf.function(lambda x: model(x, training=False))
        chunks = [tf.constant(test_x[i:i + 256]) for i in range(0, len(test_x), 256)]
        for c in chunks[:2]:
            fwd(c).numpy()
        t = time.perf_counter()
        for c in chunks:
            fwd(c).numpy()
        rec["infer_images_per_s"] = len(test_x) / (time.perf_counter() - t)
        one = [tf.constant(test_x[i:i + 1]) for i in range(300)]
        lat = []
        for i, x in enumerate(one):
            t = time.perf_counter()
            fwd(x).numpy()
            if i >= 20:
                lat.append((time.perf_counter() - t) * 1e6)
        rec["latency_us"] = percentiles(lat)[0]
    return rec


# ---------------------------------------------------------------- PyTorch
def torch_model(arch):
    """The network in PyTorch (NCHW). `nn.Flatten` flattens (channel, height, width)."""
    from torch import nn
    pool = lambda: nn.MaxPool2d(2, 2, ceil_mode=True)  # = SAME for 2x2/2 on these sizes
    if arch == "small":
        return nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), pool(),
            nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), pool(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), pool(),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), pool(),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), pool(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Dropout(0.25), nn.Linear(1024, 10))


def load_microconv_safetensors(model, path):
    """Loads a file from `host-trainer export --out X.safetensors` into `torch_model`:
    conv weights HWIO -> OIHW; dense weights [in, out] -> [out, in]; the first dense
    layer's inputs reordered from microconv's (h, w, c) flattening to PyTorch's (c, h, w)."""
    import torch
    from safetensors.torch import load_file
    from torch import nn
    t = load_file(path)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    denses = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, m in enumerate(convs, 1):
            m.weight.copy_(t[f"conv{i}.weight"].permute(3, 2, 0, 1))
            m.bias.copy_(t[f"conv{i}.bias"])
        c = convs[-1].out_channels
        for i, m in enumerate(denses, 1):
            w = t[f"dense{i}.weight"]  # [in, out]
            if i == 1:
                hw = int(round((w.shape[0] // c) ** 0.5))
                w = w.reshape(hw, hw, c, -1).permute(2, 0, 1, 3).reshape(w.shape[0], -1)
            m.weight.copy_(w.t())
            m.bias.copy_(t[f"dense{i}.bias"])
    return model


def check_safetensors(a):
    """PyTorch loads a microconv safetensors file and gets microconv's test accuracy."""
    import numpy as np
    import torch
    path = os.path.abspath(a.safetensors)
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        arch = (f.metadata() or {}).get("arch", "small")
    model = load_microconv_safetensors(torch_model(arch), path).eval()
    x = load_idx("t10k-images-idx3-ubyte").astype(np.float32) / 255.0
    y = load_idx("t10k-labels-idx1-ubyte")
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 1000].reshape(-1, 1, 28, 28))).argmax(1)
                          for i in range(0, len(x), 1000)]).numpy()
    torch_acc = float((pred == y).mean())
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "host-trainer"], cwd=ROOT)
    out = subprocess.check_output([os.path.join(ROOT, "target", "release", "host-trainer"), "eval",
                                   "--params", path, "--no-plots"], cwd=ROOT, text=True)
    mc_acc = float(out.strip().splitlines()[-1].split(":")[1])
    print(f"{path} ({arch}): PyTorch {torch.__version__} test accuracy {torch_acc:.4f}, "
          f"microconv {mc_acc:.4f}, difference {abs(torch_acc - mc_acc) * len(y):.0f} images")
    if abs(torch_acc - mc_acc) * len(y) > 2:
        sys.exit("FAIL: PyTorch and microconv disagree on more than 2 test images")


def run_torch(arch, threads, batch, steps, warmup, infer):
    import numpy as np
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = torch_model(arch)
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    train_x, train_y = load_idx("train-images-idx3-ubyte"), load_idx("train-labels-idx1-ubyte")
    bs = [(torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y)) for x, y in batches(train_x, train_y, batch)]
    model.train()
    times = []
    for s in range(warmup + steps):
        x, y = bs[s % len(bs)]
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if s >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    rec = dict(zip(("step_ms", "step_ms_p10", "step_ms_p90"), percentiles(times)))
    rec.update(infer_images_per_s=0.0, latency_us=0.0)
    if infer:
        model.eval()
        test_x = torch.from_numpy(load_idx("t10k-images-idx3-ubyte").astype(np.float32).reshape(-1, 1, 28, 28) / 255.0)
        with torch.inference_mode():
            for i in range(0, 512, 256):
                model(test_x[i:i + 256])
            t = time.perf_counter()
            for i in range(0, len(test_x), 256):
                model(test_x[i:i + 256])
            rec["infer_images_per_s"] = len(test_x) / (time.perf_counter() - t)
            lat = []
            for i in range(300):
                x = test_x[i:i + 1]
                t = time.perf_counter()
                model(x)
                if i >= 20:
                    lat.append((time.perf_counter() - t) * 1e6)
            rec["latency_us"] = percentiles(lat)[0]
    return rec


def child(args):
    fn = run_tf if args.framework == "tensorflow" else run_torch
    rec = fn(args.archs, args.threads_one, args.batch, args.steps, args.warmup, not args.no_infer)
    rec.update(framework=args.framework, arch=args.archs, threads=args.threads_one, batch=args.batch,
               peak_rss_mib=peak_rss_mib())
    print(json.dumps(rec), flush=True)


def run_framework(fw, arch, threads, a):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--framework", fw, "--archs", arch,
           "--threads-one", str(threads), "--batch", str(a.batch), "--steps", str(steps_for(arch, a)),
           "--warmup", str(a.warmup)] + (["--no-infer"] if a.no_infer else [])
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def run_microconv(arch, threads, a):
    exe = os.path.join(ROOT, "target", "release", "host-trainer")
    cmd = [exe, "bench", "--json", "--archs", arch, "--threads", str(threads), "--batch", str(a.batch),
           "--steps", str(steps_for(arch, a)), "--warmup", str(a.warmup)] + (["--no-infer"] if a.no_infer else [])
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    rec = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    rec["framework"] = "microconv"
    return rec


def steps_for(arch, a):
    return a.steps or (200 if arch == "small" else 30)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default="small,seed")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=0, help="timed steps [default: 200 small, 30 seed]")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--frameworks", default="microconv,tensorflow,pytorch")
    p.add_argument("--no-infer", action="store_true")
    p.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    p.add_argument("--venv", default=os.path.join(HERE, ".venv"))
    p.add_argument("--json", help="also write all records to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", help=argparse.SUPPRESS)
    p.add_argument("--threads-one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--safetensors", metavar="FILE",
                   help="instead: load this `host-trainer export` safetensors file in PyTorch "
                        "and compare its test accuracy with microconv's")
    a = p.parse_args()
    if a.child:
        return child(a)
    ensure_venv(os.path.abspath(a.venv))
    if a.safetensors:
        return check_safetensors(a)
    fws = a.frameworks.split(",")
    if "microconv" in fws:
        subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "host-trainer"], cwd=ROOT)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy else None
    records = []
    try:
        for arch in a.archs.split(","):
            for t in [int(t) for t in a.threads.split(",")]:
                for fw in fws:
                    r = run_microconv(arch, t, a) if fw == "microconv" else run_framework(fw, arch, t, a)
                    records.append(r)
                    print(f"  measured {fw:10} {arch:5} {t} threads: {r['step_ms']:.2f} ms/step", file=sys.stderr, flush=True)
    finally:
        if busy:
            busy.kill()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(records, f, indent=1)
    report(records, a)


def report(records, a):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\n{time.strftime('%Y-%m-%d')} | {cpu}, {os.cpu_count()} cores | batch {a.batch}"
          f"{' | one core kept busy by another process' if a.busy else ''}")
    import importlib.metadata as md
    vers = {"tensorflow": "tensorflow-cpu", "pytorch": "torch"}
    print("versions: " + ", ".join(f"{k} {md.version(v)}" for k, v in vers.items() if k in a.frameworks))
    key = lambda r: (r["arch"], r["threads"])
    mc = {key(r): r for r in records if r["framework"] == "microconv"}
    hdr = f"{'arch':6}{'thr':>4} {'framework':11}{'ms/step':>9}{'p10-p90':>15}{'x mc':>7}{'peak MiB':>10}{'x mc':>7}{'infer img/s':>13}{'mc x':>7}{'lat us':>9}{'x mc':>7}"
    print(hdr)
    for r in records:
        m = mc.get(key(r))
        ratio = lambda f, inv=False: (f"{(m[f] / r[f] if inv else r[f] / m[f]):7.2f}" if m and r[f] and m[f] else f"{'-':>7}")
        print(f"{r['arch']:6}{r['threads']:>4} {r['framework']:11}{r['step_ms']:9.2f}"
              f"{r['step_ms_p10']:7.1f}-{r['step_ms_p90']:<7.1f}{ratio('step_ms')}"
              f"{r['peak_rss_mib']:10.0f}{ratio('peak_rss_mib')}"
              f"{r['infer_images_per_s']:13.0f}{ratio('infer_images_per_s', True)}"
              f"{r['latency_us']:9.0f}{ratio('latency_us')}")
    print("'x mc': the framework's figure divided by microconv's (above 1: microconv is faster or smaller);"
          " 'mc x': microconv's images/s divided by the framework's.")


if __name__ == "__main__":
    main()
