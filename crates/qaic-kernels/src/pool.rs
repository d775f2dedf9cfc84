//! Pooling (ONNX `MaxPool` with optional argmax indices, `AveragePool`, `LpPool`, global
//! pools), NCHW, 1-D to 3-D. Window geometry reuses [`ConvParams`] (kernel, strides,
//! dilations, pads); the caller resolves `auto_pad` into `pads`.

use crate::conv::{ConvParams, Geo3};
use crate::num::Numeric;
use crate::threads::{parallel_for, SendPtr};
use crate::util::{check_len, numel};
use crate::KernelError;

/// Pooling kinds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolKind {
    Max,
    /// Average; `count_include_pad` counts padding positions (up to the padded end) in the
    /// divisor, as ONNX/onnxruntime do.
    Avg { count_include_pad: bool },
    /// `(sum |x|^p)^(1/p)`.
    Lp(f32),
}

fn out_shape(op: &'static str, p: &ConvParams, x_shape: &[usize], ceil: bool) -> Result<(Vec<usize>, Geo3), KernelError> {
    if x_shape.len() < 3 {
        return Err(KernelError::invalid(op, format!("input {x_shape:?} needs [N, C, spatial...]")));
    }
    let os = p.output_spatial(&x_shape[2..], ceil)?;
    let g = Geo3::new(op, p, &x_shape[2..], &os)?;
    let mut shape = x_shape[..2].to_vec();
    shape.extend_from_slice(&os);
    Ok((shape, g))
}

/// Output shape of a pooling window over `x_shape`.
pub fn pool_output_shape(p: &ConvParams, x_shape: &[usize], ceil_mode: bool) -> Result<Vec<usize>, KernelError> {
    out_shape("pool", p, x_shape, ceil_mode).map(|(s, _)| s)
}

/// Runs `f(plane, out_plane, idx_plane)` for every (n, c) plane in parallel.
fn planes<T: Send, I: Send>(count: usize, osz: usize, out: &mut [T], idx: Option<&mut [I]>, f: impl Fn(usize, &mut [T], Option<&mut [I]>) + Sync) {
    let op = SendPtr(out.as_mut_ptr());
    let ip = idx.map(|s| SendPtr(s.as_mut_ptr()));
    parallel_for(count, |i| {
        // SAFETY: plane i writes only its own output (and index) range.
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(i * osz), osz) };
        let ix = ip.map(|p| unsafe { std::slice::from_raw_parts_mut(p.get().add(i * osz), osz) });
        f(i, o, ix);
    });
}

/// `MaxPool` for any numeric type. With `indices`, also writes the flat input index of each
/// maximum (row-major over the whole input, or column-major over the spatial dims when
/// `storage_order_col_major`, as the ONNX attribute `storage_order=1`).
#[allow(clippy::too_many_arguments)]
pub fn max_pool<T: Numeric>(
    p: &ConvParams,
    ceil_mode: bool,
    x: &[T],
    x_shape: &[usize],
    out: &mut [T],
    indices: Option<&mut [i64]>,
    storage_order_col_major: bool,
) -> Result<Vec<usize>, KernelError> {
    check_len("max_pool", "input", x.len(), x_shape)?;
    let (oshape, g) = out_shape("max_pool", p, x_shape, ceil_mode)?;
    check_len("max_pool", "output", out.len(), &oshape)?;
    if let Some(ix) = indices.as_deref() {
        check_len("max_pool", "indices", ix.len(), &oshape)?;
    }
    let (is, os) = (numel(&g.i), numel(&g.o));
    if indices.is_none() && g.k[0] == 1 && g.i[0] == 1 && g.o[0] == 1 {
        planes::<T, i64>(x_shape[0] * x_shape[1], os, out, None, |pl, o, _| {
            max_pool_plane_2d(&g, &x[pl * is..(pl + 1) * is], o);
        });
        return Ok(oshape);
    }
    planes(x_shape[0] * x_shape[1], os, out, indices, |pl, o, mut ix| {
        let src = &x[pl * is..(pl + 1) * is];
        let mut t = 0;
        for od in 0..g.o[0] {
            for oh in 0..g.o[1] {
                for ow in 0..g.o[2] {
                    let mut best = T::LOWEST;
                    let mut bi: Option<usize> = None;
                    for kd in 0..g.k[0] {
                        let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                        if id < 0 || id >= g.i[0] as isize {
                            continue;
                        }
                        for kh in 0..g.k[1] {
                            let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                            if ih < 0 || ih >= g.i[1] as isize {
                                continue;
                            }
                            for kw in 0..g.k[2] {
                                let iw = (ow * g.s[2] + kw * g.d[2]) as isize - g.pb[2] as isize;
                                if iw < 0 || iw >= g.i[2] as isize {
                                    continue;
                                }
                                let (id, ih, iw) = (id as usize, ih as usize, iw as usize);
                                let k = (id * g.i[1] + ih) * g.i[2] + iw;
                                let v = src[k];
                                if bi.is_none() || v > best || (v.is_nan() && !best.is_nan()) {
                                    best = v;
                                    bi = Some(if storage_order_col_major { (iw * g.i[1] + ih) * g.i[0] + id } else { k });
                                }
                            }
                        }
                    }
                    o[t] = best;
                    if let Some(ix) = ix.as_deref_mut() {
                        ix[t] = bi.map_or(-1, |b| (pl * is + b) as i64);
                    }
                    t += 1;
                }
            }
        }
    });
    Ok(oshape)
}

/// NaN-propagating max, as the generic loop's rule: a NaN, once seen, is the result.
#[inline(always)]
fn nan_max<T: Numeric>(m: T, v: T) -> T {
    if v > m || v.is_nan() { v } else { m }
}

/// One 2-D max-pool plane without indices, separably: first the maximum over each window's
/// columns for every input row the windows read, then over each window's rows. Windows
/// clipped by padding ignore the padding, exactly as the general loop does.
fn max_pool_plane_2d<T: Numeric>(g: &Geo3, src: &[T], out: &mut [T]) {
    let (ih_n, iw_n) = (g.i[1], g.i[2]);
    let (oh_n, ow_n) = (g.o[1], g.o[2]);
    let (kh_n, kw_n) = (g.k[1], g.k[2]);
    let (sh, sw) = (g.s[1], g.s[2]);
    let (dh, dw) = (g.d[1], g.d[2]);
    let (pt, pl) = (g.pb[1], g.pb[2]);
    if oh_n == 0 || ow_n == 0 {
        return;
    }
    // Output columns whose windows lie wholly inside the input row: no bounds checks there.
    let inner = |ow: usize| ow * sw >= pl && ow * sw + (kw_n - 1) * dw < pl + iw_n;
    let mut hmax: Vec<T> = Vec::with_capacity(ih_n * ow_n);
    for ih in 0..ih_n {
        let row = &src[ih * iw_n..(ih + 1) * iw_n];
        for ow in 0..ow_n {
            let mut m = T::LOWEST;
            if inner(ow) {
                let base = ow * sw - pl;
                for kw in 0..kw_n {
                    m = nan_max(m, row[base + kw * dw]);
                }
            } else {
                for kw in 0..kw_n {
                    let c = ow * sw + kw * dw;
                    if c >= pl && c - pl < iw_n {
                        m = nan_max(m, row[c - pl]);
                    }
                }
            }
            hmax.push(m);
        }
    }
    for oh in 0..oh_n {
        let o = &mut out[oh * ow_n..(oh + 1) * ow_n];
        o.fill(T::LOWEST);
        for kh in 0..kh_n {
            let r = oh * sh + kh * dh;
            if r < pt || r - pt >= ih_n {
                continue;
            }
            let h = &hmax[(r - pt) * ow_n..(r - pt + 1) * ow_n];
            for (d, &v) in o.iter_mut().zip(h) {
                *d = nan_max(*d, v);
            }
        }
    }
}

/// `AveragePool` / `LpPool` (f32).
pub fn pool_f32(p: &ConvParams, ceil_mode: bool, kind: PoolKind, x: &[f32], x_shape: &[usize], out: &mut [f32]) -> Result<Vec<usize>, KernelError> {
    if kind == PoolKind::Max {
        return max_pool(p, ceil_mode, x, x_shape, out, None, false);
    }
    check_len("pool", "input", x.len(), x_shape)?;
    let (oshape, g) = out_shape("pool", p, x_shape, ceil_mode)?;
    check_len("pool", "output", out.len(), &oshape)?;
    let r = x_shape.len() - 2;
    // End padding promoted to 3-D (for count_include_pad's clipped windows).
    let mut pe = [0usize; 3];
    for d in 0..r {
        pe[3 - r + d] = p.pads[r + d];
    }
    let (is, os) = (numel(&g.i), numel(&g.o));
    planes::<f32, i64>(x_shape[0] * x_shape[1], os, out, None, |pl, o, _| {
        let src = &x[pl * is..(pl + 1) * is];
        let mut t = 0;
        for od in 0..g.o[0] {
            for oh in 0..g.o[1] {
                for ow in 0..g.o[2] {
                    let (mut acc, mut valid, mut padded) = (0f64, 0usize, 0usize);
                    for kd in 0..g.k[0] {
                        let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                        let din = id >= 0 && id < g.i[0] as isize;
                        let dpad = id < (g.i[0] + pe[0]) as isize;
                        for kh in 0..g.k[1] {
                            let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                            let hin = ih >= 0 && ih < g.i[1] as isize;
                            let hpad = ih < (g.i[1] + pe[1]) as isize;
                            for kw in 0..g.k[2] {
                                let iw = (ow * g.s[2] + kw * g.d[2]) as isize - g.pb[2] as isize;
                                let win = iw >= 0 && iw < g.i[2] as isize;
                                let wpad = iw < (g.i[2] + pe[2]) as isize;
                                if dpad && hpad && wpad {
                                    padded += 1;
                                }
                                if din && hin && win {
                                    let v = src[((id as usize) * g.i[1] + ih as usize) * g.i[2] + iw as usize] as f64;
                                    acc += match kind {
                                        PoolKind::Lp(pn) => v.abs().powf(pn as f64),
                                        _ => v,
                                    };
                                    valid += 1;
                                }
                            }
                        }
                    }
                    o[t] = match kind {
                        PoolKind::Avg { count_include_pad } => {
                            let div = if count_include_pad { padded } else { valid };
                            (acc / div.max(1) as f64) as f32
                        }
                        PoolKind::Lp(pn) => acc.powf(1.0 / pn as f64) as f32,
                        PoolKind::Max => unreachable!("handled above"),
                    };
                    t += 1;
                }
            }
        }
    });
    Ok(oshape)
}

/// `GlobalAveragePool` / `GlobalMaxPool` / `GlobalLpPool`: one value per (n, c) plane of
/// `spatial` elements.
pub fn global_pool_f32(kind: PoolKind, x: &[f32], n: usize, c: usize, spatial: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_len("global_pool", "input", x.len(), &[n, c, spatial])?;
    check_len("global_pool", "output", out.len(), &[n, c])?;
    for (i, o) in out.iter_mut().enumerate() {
        let s = &x[i * spatial..(i + 1) * spatial];
        *o = match kind {
            PoolKind::Max => s.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a || b.is_nan() { b } else { a }),
            PoolKind::Avg { .. } => (s.iter().map(|&v| v as f64).sum::<f64>() / spatial as f64) as f32,
            PoolKind::Lp(p) => s.iter().map(|&v| (v.abs() as f64).powf(p as f64)).sum::<f64>().powf(1.0 / p as f64) as f32,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_with_indices_and_ceil() {
        // 1x1x4x4, kernel 2, stride 2, ceil mode with 3x3 -> 2x2.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let p = ConvParams { strides: vec![2, 2], ..ConvParams::new(&[2, 2]) };
        let mut out = vec![0f32; 4];
        let mut idx = vec![0i64; 4];
        let sh = max_pool(&p, false, &x, &[1, 1, 4, 4], &mut out, Some(&mut idx), false).unwrap();
        assert_eq!(sh, vec![1, 1, 2, 2]);
        assert_eq!(out, [5.0, 7.0, 13.0, 15.0]);
        assert_eq!(idx, [5, 7, 13, 15]);
        max_pool(&p, false, &x, &[1, 1, 4, 4], &mut out, Some(&mut idx), true).unwrap();
        assert_eq!(idx, [5, 13, 7, 15]);
        let x5: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let sh = pool_output_shape(&p, &[1, 1, 5, 5], true).unwrap();
        assert_eq!(sh, vec![1, 1, 3, 3]);
        let mut o9 = vec![0f32; 9];
        max_pool(&p, true, &x5, &[1, 1, 5, 5], &mut o9, None, false).unwrap();
        assert_eq!(o9, [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
        let xi: Vec<u8> = (0..16).collect();
        let mut oi = vec![0u8; 4];
        max_pool(&p, false, &xi, &[1, 1, 4, 4], &mut oi, None, false).unwrap();
        assert_eq!(oi, [5, 7, 13, 15]);
    }

    /// The separable 2-D path (no indices) equals the general loop (used with indices) for
    /// padding, strides, dilations, ceil mode, NaNs and integers.
    #[test]
    fn max_pool_2d_fast_path_matches_general_loop() {
        let mut seed = 12345u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        // (h, w, kernel, stride, dilation, pads [t, l, b, r], ceil)
        let cases = [
            (112, 112, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            (9, 11, [3, 2], [1, 2], [1, 1], [0, 1, 2, 0], true),
            (10, 7, [2, 3], [3, 2], [2, 1], [1, 0, 0, 2], true),
            (5, 5, [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], false),
            (1, 13, [1, 3], [1, 3], [1, 1], [0, 0, 0, 0], true),
        ];
        for (ci, (h, w, k, s, d, pads, ceil)) in cases.into_iter().enumerate() {
            let p = ConvParams { strides: s.to_vec(), dilations: d.to_vec(), pads: pads.to_vec(), ..ConvParams::new(&k) };
            let shape = [2, 3, h, w];
            let mut x: Vec<f32> = (0..2 * 3 * h * w).map(|_| (next() % 2001) as f32 / 100.0 - 10.0).collect();
            x[5] = f32::NAN;
            let osh = pool_output_shape(&p, &shape, ceil).unwrap();
            let n: usize = osh.iter().product();
            let (mut fast, mut general, mut idx) = (vec![0f32; n], vec![0f32; n], vec![0i64; n]);
            max_pool(&p, ceil, &x, &shape, &mut fast, None, false).unwrap();
            max_pool(&p, ceil, &x, &shape, &mut general, Some(&mut idx), false).unwrap();
            let same = fast.iter().zip(&general).all(|(a, b)| a == b || a.is_nan() && b.is_nan());
            assert!(same, "case {ci}");
            let xi: Vec<i32> = x.iter().map(|v| if v.is_nan() { 0 } else { *v as i32 }).collect();
            let (mut fi, mut gi) = (vec![0i32; n], vec![0i32; n]);
            max_pool(&p, ceil, &xi, &shape, &mut fi, None, false).unwrap();
            max_pool(&p, ceil, &xi, &shape, &mut gi, Some(&mut idx), false).unwrap();
            assert_eq!(fi, gi, "case {ci} (i32)");
        }
    }

    #[test]
    fn average_pool_padding_modes() {
        // 1x1x3x3 ones, kernel 3, pad 1: corners see 4 valid of 9.
        let x = vec![1f32; 9];
        let p = ConvParams { pads: vec![1, 1, 1, 1], ..ConvParams::new(&[3, 3]) };
        let mut out = vec![0f32; 9];
        pool_f32(&p, false, PoolKind::Avg { count_include_pad: false }, &x, &[1, 1, 3, 3], &mut out).unwrap();
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        pool_f32(&p, false, PoolKind::Avg { count_include_pad: true }, &x, &[1, 1, 3, 3], &mut out).unwrap();
        assert!((out[0] - 4.0 / 9.0).abs() < 1e-6 && (out[4] - 1.0).abs() < 1e-6 && (out[1] - 6.0 / 9.0).abs() < 1e-6);
        pool_f32(&ConvParams::new(&[2]), false, PoolKind::Lp(2.0), &[3.0, 4.0, 0.0], &[1, 1, 3], &mut out[..2]).unwrap();
        assert!((out[0] - 5.0).abs() < 1e-6 && (out[1] - 4.0).abs() < 1e-6);
        let mut g = vec![0f32; 2];
        global_pool_f32(PoolKind::Avg { count_include_pad: false }, &[1.0, 2.0, 3.0, 5.0], 1, 2, 2, &mut g).unwrap();
        assert_eq!(g, [1.5, 4.0]);
    }
}
