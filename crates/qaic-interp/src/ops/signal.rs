//! Signal processing: DFT (opsets 17, 20), STFT, Hann/Hamming/Blackman windows.
//! Transforms are direct O(n²) sums in f64: the node tests and real uses here are small.

use qaic_tensor::{DType, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("DFT", 17, dft);
    r.add("STFT", 17, stft);
    r.add("HannWindow", 17, |c| window(c, Win::Hann));
    r.add("HammingWindow", 17, |c| window(c, Win::Hamming));
    r.add("BlackmanWindow", 17, |c| window(c, Win::Blackman));
}

/// Complex DFT of `x` (length `x.len()`, zero-padded or truncated to `n`).
fn dft_1d(x: &[(f64, f64)], n: usize, inverse: bool) -> Vec<(f64, f64)> {
    let sign = if inverse { 1.0 } else { -1.0 };
    (0..n)
        .map(|k| {
            let mut acc = (0.0, 0.0);
            for (t, &(re, im)) in x.iter().take(n).enumerate() {
                let ang = sign * 2.0 * std::f64::consts::PI * ((k * t) % n) as f64 / n as f64;
                let (s, c) = ang.sin_cos();
                acc.0 += re * c - im * s;
                acc.1 += re * s + im * c;
            }
            if inverse { (acc.0 / n as f64, acc.1 / n as f64) } else { acc }
        })
        .collect()
}

fn dft(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let opset = ctx.opset;
    let attr_axis = ctx.attr_i("axis", 1)?;
    let inverse = ctx.attr_i("inverse", 0)? != 0;
    let onesided = ctx.attr_i("onesided", 0)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let rank = xt.rank();
        let last = *xt.shape().last().ok_or("input must have rank >= 2")?;
        if last != 1 && last != 2 {
            return Err(OpError::Msg(format!("last dimension must be 1 (real) or 2 (complex), is {last}")));
        }
        let axis = if opset >= 20 {
            match opt_input(inputs, 2)?.filter(|t| !t.is_empty()) {
                Some(t) => ints_of(t)?[0],
                None => -2,
            }
        } else {
            attr_axis
        };
        // The signal axes exclude the trailing real/imaginary axis.
        let a = norm_axis(axis, rank)?;
        if a == rank - 1 {
            return Err(OpError::Msg("axis cannot be the real/imaginary axis".into()));
        }
        let len_in = xt.shape()[a];
        let n = match opt_input(inputs, 1)?.filter(|t| !t.is_empty()) {
            Some(t) => ints_of(t)?[0] as usize,
            None if inverse && onesided => 2 * (len_in - 1),
            None => len_in,
        };
        let x: Vec<f64> = if xt.dtype() == DType::F64 { xt.to_vec::<f64>()? } else { to_f32(xt)?.into_iter().map(|v| v as f64).collect() };
        let outer: usize = xt.shape()[..a].iter().product();
        let inner: usize = xt.shape()[a + 1..rank - 1].iter().product();
        let (out_len, out_last) = match (inverse, onesided) {
            (false, true) => (n / 2 + 1, 2),
            (true, true) => (n, 1),
            _ => (n, 2),
        };
        let mut out = vec![0f64; outer * out_len * inner * out_last];
        for o in 0..outer {
            for i in 0..inner {
                let at = |t: usize| ((o * len_in + t) * inner + i) * last;
                let sig: Vec<(f64, f64)> = (0..len_in).map(|t| (x[at(t)], if last == 2 { x[at(t) + 1] } else { 0.0 })).collect();
                let res = if inverse && onesided {
                    // irfft: rebuild the Hermitian spectrum of length n from its first n/2+1 bins.
                    let half = n / 2 + 1;
                    let full: Vec<(f64, f64)> = (0..n)
                        .map(|k| {
                            let (src, conj) = if k < half { (k, false) } else { (n - k, true) };
                            let v = sig.get(src).copied().unwrap_or((0.0, 0.0));
                            let mut v = if conj { (v.0, -v.1) } else { v };
                            if k == 0 || (n % 2 == 0 && k == n / 2) {
                                v.1 = 0.0;
                            }
                            v
                        })
                        .collect();
                    dft_1d(&full, n, true)
                } else {
                    dft_1d(&sig, n, inverse)
                };
                for k in 0..out_len {
                    let dst = ((o * out_len + k) * inner + i) * out_last;
                    out[dst] = res[k].0;
                    if out_last == 2 {
                        out[dst + 1] = res[k].1;
                    }
                }
            }
        }
        let mut shape = xt.shape().to_vec();
        shape[a] = out_len;
        shape[rank - 1] = out_last;
        store(xt.dtype(), shape, out)
    }))
}

fn store(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Vec<Option<Value>>, OpError> {
    if dtype == DType::F64 {
        out1(qaic_tensor::Tensor::from_vec(shape, v)?)
    } else {
        out1(from_f32(dtype, shape, &v.iter().map(|&x| x as f32).collect::<Vec<_>>())?)
    }
}

fn stft(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let onesided = ctx.attr_i("onesided", 1)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        if xt.rank() != 3 {
            return Err(OpError::Msg(format!("signal must be [batch, length, 1|2], is {:?}", xt.shape())));
        }
        let (b, len, last) = (xt.shape()[0], xt.shape()[1], xt.shape()[2]);
        let step = ints_of(input(inputs, 1)?)?[0];
        if step <= 0 {
            return Err(OpError::Msg(format!("frame_step must be positive, is {step}")));
        }
        let window: Option<Vec<f64>> = opt_input(inputs, 2)?.filter(|t| !t.is_empty()).map(|t| to_f32(t).map(|v| v.into_iter().map(|x| x as f64).collect())).transpose()?;
        let flen = match opt_input(inputs, 3)?.filter(|t| !t.is_empty()) {
            Some(t) => ints_of(t)?[0] as usize,
            None => window.as_ref().map(|w| w.len()).unwrap_or(len),
        };
        let window = window.unwrap_or_else(|| vec![1.0; flen]);
        if flen > len || flen == 0 {
            return Err(OpError::Msg(format!("frame length {flen} does not fit a signal of {len}")));
        }
        let frames = 1 + (len - flen) / step as usize;
        let x: Vec<f64> = if xt.dtype() == DType::F64 { xt.to_vec::<f64>()? } else { to_f32(xt)?.into_iter().map(|v| v as f64).collect() };
        let bins = if onesided { flen / 2 + 1 } else { flen };
        let mut out = vec![0f64; b * frames * bins * 2];
        for bi in 0..b {
            for f in 0..frames {
                let start = f * step as usize;
                let sig: Vec<(f64, f64)> = (0..window.len())
                    .map(|t| {
                        let idx = (bi * len + start + t) * last;
                        if start + t >= len {
                            return (0.0, 0.0);
                        }
                        let w = window[t];
                        (x[idx] * w, if last == 2 { x[idx + 1] * w } else { 0.0 })
                    })
                    .collect();
                let res = dft_1d(&sig, flen, false);
                for k in 0..bins {
                    let dst = ((bi * frames + f) * bins + k) * 2;
                    out[dst] = res[k].0;
                    out[dst + 1] = res[k].1;
                }
            }
        }
        store(xt.dtype(), vec![b, frames, bins, 2], out)
    }))
}

#[derive(Clone, Copy)]
enum Win {
    Hann,
    Hamming,
    Blackman,
}

fn window(ctx: &BuildCtx<'_>, kind: Win) -> Result<Box<dyn Kernel>, OpError> {
    let periodic = ctx.attr_i("periodic", 1)? != 0;
    let dt = ctx.attr_i("output_datatype", 1)?;
    let dtype = DType::from_onnx(dt as i32).ok_or_else(|| OpError::Msg(format!("unknown output_datatype {dt}")))?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let size = ints_of(input(inputs, 0)?)?[0].max(0) as usize;
        let n1 = if periodic { size as f64 } else { size as f64 - 1.0 };
        let pi = std::f64::consts::PI;
        let v: Vec<f64> = (0..size)
            .map(|i| {
                let x = i as f64;
                match kind {
                    Win::Hann => (pi * x / n1).sin().powi(2),
                    Win::Hamming => 25.0 / 46.0 - 21.0 / 46.0 * (2.0 * pi * x / n1).cos(),
                    Win::Blackman => 0.42 - 0.5 * (2.0 * pi * x / n1).cos() + 0.08 * (4.0 * pi * x / n1).cos(),
                }
            })
            .collect();
        if dtype.is_float() {
            store(dtype, vec![size], v)
        } else {
            let ints: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            out1(super::quant::int_tensor(dtype, vec![size], &ints).or_else(|_| qaic_tensor::Tensor::from_vec(vec![size], ints).map_err(OpError::from))?)
        }
    }))
}
