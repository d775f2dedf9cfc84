//! Softmax / LogSoftmax and normalisations (layer, batch in inference mode, instance), f32.
//!
//! All take plain `(outer, n, inner)`-style dimensions: the caller folds an ONNX shape and
//! axis into them (e.g. `Softmax` opset 13 on axis `a`: `outer = prod(shape[..a])`,
//! `n = shape[a]`, `inner = prod(shape[a+1..])`; opset < 13 uses `inner = 1` and
//! `n = prod(shape[a..])`).

use crate::elementwise::UnaryOp;
use crate::threads::{parallel_for, SendPtr};
use crate::{KernelError, Kernels};

fn check(op: &'static str, what: &str, got: usize, want: usize) -> Result<(), KernelError> {
    if got != want {
        return Err(KernelError::invalid(op, format!("{what} has {got} elements, expected {want}")));
    }
    Ok(())
}

/// Runs `f(i, out_block)` for `count` disjoint blocks of `len` elements of `out`, in
/// parallel when the total is large.
fn par_blocks(out: &mut [f32], count: usize, len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let p = SendPtr(out.as_mut_ptr());
    let work = |i: usize| {
        // SAFETY: block i is disjoint from every other block.
        let o = unsafe { std::slice::from_raw_parts_mut(p.get().add(i * len), len) };
        f(i, o);
    };
    if count > 1 && count * len >= 1 << 14 {
        parallel_for(count, work);
    } else {
        (0..count).for_each(work);
    }
}

impl Kernels {
    /// Softmax (or LogSoftmax when `log`) over the middle dimension of `[outer, n, inner]`.
    pub fn softmax(&self, x: &[f32], outer: usize, n: usize, inner: usize, log: bool, out: &mut [f32]) -> Result<(), KernelError> {
        check("softmax", "input", x.len(), outer * n * inner)?;
        check("softmax", "output", out.len(), outer * n * inner)?;
        if outer * n * inner == 0 {
            return Ok(());
        }
        par_blocks(out, outer, n * inner, |o, dst| {
            let src = &x[o * n * inner..(o + 1) * n * inner];
            if inner == 1 {
                let m = src.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a || b.is_nan() { b } else { a });
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s - m;
                }
                if log {
                    let mut e = dst.to_vec();
                    self.unary_inplace(UnaryOp::Exp, &mut e);
                    let lse = e.iter().map(|&v| v as f64).sum::<f64>().ln() as f32;
                    dst.iter_mut().for_each(|v| *v -= lse);
                } else {
                    self.unary_inplace(UnaryOp::Exp, dst);
                    let s: f64 = dst.iter().map(|&v| v as f64).sum();
                    let inv = (1.0 / s) as f32;
                    dst.iter_mut().for_each(|v| *v *= inv);
                }
            } else {
                let mut m = vec![f32::NEG_INFINITY; inner];
                for row in src.chunks_exact(inner) {
                    for (a, &b) in m.iter_mut().zip(row) {
                        if b > *a || b.is_nan() {
                            *a = b;
                        }
                    }
                }
                for (drow, srow) in dst.chunks_exact_mut(inner).zip(src.chunks_exact(inner)) {
                    for ((d, s), mv) in drow.iter_mut().zip(srow).zip(&m) {
                        *d = s - mv;
                    }
                }
                let mut e = dst.to_vec();
                self.unary_inplace(UnaryOp::Exp, &mut e);
                let mut sum = vec![0f32; inner];
                for row in e.chunks_exact(inner) {
                    for (a, &b) in sum.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                if log {
                    let ls: Vec<f32> = sum.iter().map(|s| s.ln()).collect();
                    for drow in dst.chunks_exact_mut(inner) {
                        for (d, l) in drow.iter_mut().zip(&ls) {
                            *d -= l;
                        }
                    }
                } else {
                    let inv: Vec<f32> = sum.iter().map(|s| 1.0 / s).collect();
                    for (drow, erow) in dst.chunks_exact_mut(inner).zip(e.chunks_exact(inner)) {
                        for ((d, ev), iv) in drow.iter_mut().zip(erow).zip(&inv) {
                            *d = ev * iv;
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// ONNX `LayerNormalization` over the last `n` elements of each of `outer` rows:
    /// `y = (x - mean) / sqrt(var + eps) * scale + bias`. `scale`/`bias` have `n` values.
    /// Optionally writes each row's mean and inverse standard deviation.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &self,
        x: &[f32],
        outer: usize,
        n: usize,
        scale: &[f32],
        bias: Option<&[f32]>,
        eps: f32,
        out: &mut [f32],
        mean_out: Option<&mut [f32]>,
        inv_std_out: Option<&mut [f32]>,
    ) -> Result<(), KernelError> {
        check("layer_norm", "input", x.len(), outer * n)?;
        check("layer_norm", "output", out.len(), outer * n)?;
        check("layer_norm", "scale", scale.len(), n)?;
        if let Some(b) = bias {
            check("layer_norm", "bias", b.len(), n)?;
        }
        if let Some(m) = mean_out.as_deref() {
            check("layer_norm", "mean output", m.len(), outer)?;
        }
        if let Some(m) = inv_std_out.as_deref() {
            check("layer_norm", "inv_std_dev output", m.len(), outer)?;
        }
        if n == 0 {
            return Ok(());
        }
        let mut st = vec![0f32; 2 * outer];
        let stats = SendPtr(st.as_mut_ptr());
        par_blocks(out, outer, n, |o, dst| {
            let src = &x[o * n..(o + 1) * n];
            let mean = (src.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32;
            let var = (src.iter().map(|&v| ((v - mean) as f64).powi(2)).sum::<f64>() / n as f64) as f32;
            let inv = 1.0 / (var + eps).sqrt();
            match bias {
                Some(b) => {
                    for (((d, &s), &g), &bb) in dst.iter_mut().zip(src).zip(scale).zip(b) {
                        *d = (s - mean) * inv * g + bb;
                    }
                }
                None => {
                    for ((d, &s), &g) in dst.iter_mut().zip(src).zip(scale) {
                        *d = (s - mean) * inv * g;
                    }
                }
            }
            // SAFETY: row o writes its own two statistics.
            unsafe {
                *stats.get().add(2 * o) = mean;
                *stats.get().add(2 * o + 1) = inv;
            }
        });
        if let Some(m) = mean_out {
            m.iter_mut().enumerate().for_each(|(i, v)| *v = st[2 * i]);
        }
        if let Some(m) = inv_std_out {
            m.iter_mut().enumerate().for_each(|(i, v)| *v = st[2 * i + 1]);
        }
        Ok(())
    }

    /// ONNX `BatchNormalization` (inference): `x` is `[n, c, spatial]` flattened.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        x: &[f32],
        n: usize,
        c: usize,
        spatial: usize,
        scale: &[f32],
        bias: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f32,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        check("batch_norm", "input", x.len(), n * c * spatial)?;
        check("batch_norm", "output", out.len(), n * c * spatial)?;
        for (w, v) in [("scale", scale), ("bias", bias), ("mean", mean), ("var", var)] {
            check("batch_norm", w, v.len(), c)?;
        }
        par_blocks(out, n * c, spatial, |i, dst| {
            let ch = i % c;
            let a = scale[ch] / (var[ch] + eps).sqrt();
            let b = bias[ch] - mean[ch] * a;
            for (d, &s) in dst.iter_mut().zip(&x[i * spatial..(i + 1) * spatial]) {
                *d = s * a + b;
            }
        });
        Ok(())
    }

    /// ONNX `InstanceNormalization`: normalises each `(n, c)` plane of `spatial` elements.
    #[allow(clippy::too_many_arguments)]
    pub fn instance_norm(
        &self,
        x: &[f32],
        n: usize,
        c: usize,
        spatial: usize,
        scale: &[f32],
        bias: &[f32],
        eps: f32,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        check("instance_norm", "input", x.len(), n * c * spatial)?;
        check("instance_norm", "output", out.len(), n * c * spatial)?;
        check("instance_norm", "scale", scale.len(), c)?;
        check("instance_norm", "bias", bias.len(), c)?;
        if spatial == 0 {
            return Ok(());
        }
        par_blocks(out, n * c, spatial, |i, dst| {
            let ch = i % c;
            let src = &x[i * spatial..(i + 1) * spatial];
            let mean = (src.iter().map(|&v| v as f64).sum::<f64>() / spatial as f64) as f32;
            let var = (src.iter().map(|&v| ((v - mean) as f64).powi(2)).sum::<f64>() / spatial as f64) as f32;
            let a = scale[ch] / (var + eps).sqrt();
            let b = bias[ch] - mean * a;
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s * a + b;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::{assert_close, Rng};
    use crate::Isa;

    #[test]
    fn softmax_and_norms() {
        let mut rng = Rng::new(11);
        let (outer, n, inner) = (3, 7, 5);
        let x: Vec<f32> = (0..outer * n * inner).map(|_| rng.f32(-8.0, 8.0)).collect();
        let mut want = vec![0f32; x.len()];
        let mut wantlog = vec![0f32; x.len()];
        for o in 0..outer {
            for j in 0..inner {
                let at = |k: usize| (o * n + k) * inner + j;
                let s: f64 = (0..n).map(|k| (x[at(k)] as f64).exp()).sum();
                for k in 0..n {
                    want[at(k)] = ((x[at(k)] as f64).exp() / s) as f32;
                    wantlog[at(k)] = (x[at(k)] as f64 - s.ln()) as f32;
                }
            }
        }
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            let mut out = vec![0f32; x.len()];
            k.softmax(&x, outer, n, inner, false, &mut out).unwrap();
            assert_close("softmax", &out, &want, 1e-5, 1e-7);
            k.softmax(&x, outer, n, inner, true, &mut out).unwrap();
            assert_close("logsoftmax", &out, &wantlog, 1e-5, 1e-5);
            // inner == 1 path: transpose-free check against the same math on rows.
            let mut o1 = vec![0f32; 7];
            k.softmax(&x[..7], 1, 7, 1, false, &mut o1).unwrap();
            let s: f64 = x[..7].iter().map(|&v| (v as f64).exp()).sum();
            let w1: Vec<f32> = x[..7].iter().map(|&v| ((v as f64).exp() / s) as f32).collect();
            assert_close("softmax rows", &o1, &w1, 1e-5, 1e-7);

            let scale = rng.vec(n * inner);
            let bias = rng.vec(n * inner);
            let mut y = vec![0f32; x.len()];
            let mut mean = vec![0f32; outer];
            let mut inv = vec![0f32; outer];
            k.layer_norm(&x, outer, n * inner, &scale, Some(&bias), 1e-5, &mut y, Some(&mut mean), Some(&mut inv)).unwrap();
            for o in 0..outer {
                let r = &x[o * n * inner..(o + 1) * n * inner];
                let m = r.iter().sum::<f32>() / r.len() as f32;
                let v = r.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / r.len() as f32;
                assert!((mean[o] - m).abs() < 1e-4 && (inv[o] - 1.0 / (v + 1e-5).sqrt()).abs() < 1e-4);
                for t in 0..r.len() {
                    let w = (r[t] - m) / (v + 1e-5).sqrt() * scale[t] + bias[t];
                    assert!((y[o * n * inner + t] - w).abs() < 1e-4);
                }
            }
            let c = 3;
            let sp = x.len() / c;
            let (sc, bi, mu, va) = (rng.vec(c), rng.vec(c), rng.vec(c), vec![0.5f32, 1.0, 2.0]);
            k.batch_norm(&x, 1, c, sp, &sc, &bi, &mu, &va, 1e-5, &mut y).unwrap();
            for t in 0..x.len() {
                let ch = t / sp;
                let w = (x[t] - mu[ch]) / (va[ch] + 1e-5).sqrt() * sc[ch] + bi[ch];
                assert!((y[t] - w).abs() < 1e-4);
            }
            k.instance_norm(&x, 1, c, sp, &sc, &bi, 1e-5, &mut y).unwrap();
            for ch in 0..c {
                let r = &x[ch * sp..(ch + 1) * sp];
                let m = r.iter().sum::<f32>() / sp as f32;
                let v = r.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / sp as f32;
                for t in 0..sp {
                    let w = (r[t] - m) / (v + 1e-5).sqrt() * sc[ch] + bi[ch];
                    assert!((y[ch * sp + t] - w).abs() < 1e-3);
                }
            }
            assert!(k.batch_norm(&x, 1, c, sp, &sc, &bi, &mu, &va[..2], 1e-5, &mut y).is_err());
        }
    }
}
