//! Spatial sampling ops: GridSample (opsets 16, 20; any number of spatial dims) and AffineGrid.

use qaic_tensor::Value;

use super::linalg::{from_f32, to_f32};
use super::util::{input, ints_of, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("GridSample", 16, grid_sample);
    r.add("AffineGrid", 20, affine_grid);
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 { lo + r } else { hi - r }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 { hi - r } else { lo + r }
    } else {
        x
    }
}

fn cubic_coeffs(x: f64) -> [f64; 4] {
    let a = -0.75;
    let x = x.abs();
    [
        ((a * (x + 1.0) - 5.0 * a) * (x + 1.0) + 8.0 * a) * (x + 1.0) - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * (1.0 - x) - (a + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((a * (2.0 - x) - 5.0 * a) * (2.0 - x) + 8.0 * a) * (2.0 - x) - 4.0 * a,
    ]
}

fn grid_sample(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let mode = match ctx.attr_s("mode", if ctx.opset >= 20 { "linear" } else { "bilinear" })?.as_str() {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" => Mode::Linear,
        "cubic" | "bicubic" => Mode::Cubic,
        m => return Err(OpError::Msg(format!("unknown mode `{m}`"))),
    };
    let pad = match ctx.attr_s("padding_mode", "zeros")?.as_str() {
        "zeros" => Pad::Zeros,
        "border" => Pad::Border,
        "reflection" => Pad::Reflection,
        m => return Err(OpError::Msg(format!("unknown padding_mode `{m}`"))),
    };
    let align = ctx.attr_i("align_corners", 0)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let gt = input(inputs, 1)?;
        let x: Vec<f64> = to_f32(xt)?.into_iter().map(|v| v as f64).collect();
        let g: Vec<f64> = to_f32(gt)?.into_iter().map(|v| v as f64).collect();
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let dims = &xt.shape()[2..];
        let r = dims.len();
        if gt.rank() != r + 2 || gt.shape()[0] != n || gt.shape()[r + 1] != r {
            return Err(OpError::Msg(format!("grid shape {:?} does not fit input {:?}", gt.shape(), xt.shape())));
        }
        let out_sp: Vec<usize> = gt.shape()[1..=r].to_vec();
        let npts: usize = out_sp.iter().product();
        let in_sp: usize = dims.iter().product();
        let in_strides = qaic_tensor::strides(dims);
        let border: Vec<(f64, f64)> =
            dims.iter().map(|&d| if align { (0.0, d as f64 - 1.0) } else { (-0.5, d as f64 - 0.5) }).collect();
        let mut y = vec![0f64; n * c * npts];
        for ni in 0..n {
            for p in 0..npts {
                let gp = &g[(ni * npts + p) * r..(ni * npts + p + 1) * r];
                // Per axis: (index or None for a zero pixel, weight).
                let mut taps: Vec<Vec<(Option<usize>, f64)>> = Vec::with_capacity(r);
                for ax in 0..r {
                    let d = dims[ax];
                    let nv = gp[r - 1 - ax];
                    let mut v = if align { (nv + 1.0) / 2.0 * (d as f64 - 1.0) } else { ((nv + 1.0) * d as f64 - 1.0) / 2.0 };
                    // The reference computes coordinates in f32.
                    v = v as f32 as f64;
                    if mode == Mode::Nearest {
                        v = v.round_ties_even();
                    }
                    let (lo, hi) = border[ax];
                    if v < lo || v > hi {
                        match pad {
                            Pad::Border => v = v.clamp(0.0, d as f64 - 1.0),
                            Pad::Reflection => v = reflect(v, lo, hi),
                            Pad::Zeros => {}
                        }
                    }
                    let at = |i: i64| -> Option<usize> {
                        match pad {
                            Pad::Zeros => (i >= 0 && (i as usize) < d).then_some(i as usize),
                            Pad::Border => Some(i.clamp(0, d as i64 - 1) as usize),
                            Pad::Reflection => Some((reflect(i as f64, lo, hi) as i64).clamp(0, d as i64 - 1) as usize),
                        }
                    };
                    let t = match mode {
                        Mode::Nearest => vec![(at(v as i64), 1.0)],
                        Mode::Linear => {
                            let x0 = v.floor();
                            let f = v - x0;
                            vec![(at(x0 as i64), 1.0 - f), (at(x0 as i64 + 1), f)]
                        }
                        Mode::Cubic => {
                            let x0 = v.floor();
                            let cf = cubic_coeffs(v - x0);
                            (0..4).map(|k| (at(x0 as i64 - 1 + k as i64), cf[k])).collect()
                        }
                    };
                    taps.push(t);
                }
                // Sum over every combination of taps (at most 4^3 for 3-D cubic).
                let combos: usize = taps.iter().map(|t| t.len()).product();
                for ch in 0..c {
                    let base = (ni * c + ch) * in_sp;
                    let mut acc = 0.0;
                    for mut k in 0..combos {
                        let mut w = 1.0;
                        let mut off = Some(0usize);
                        for ax in (0..r).rev() {
                            let (idx, wt) = taps[ax][k % taps[ax].len()];
                            k /= taps[ax].len();
                            w *= wt;
                            off = match (off, idx) {
                                (Some(o), Some(i)) => Some(o + i * in_strides[ax]),
                                _ => None,
                            };
                        }
                        if let Some(o) = off {
                            acc += w * x[base + o];
                        }
                    }
                    y[(ni * c + ch) * npts + p] = acc;
                }
            }
        }
        let mut shape = vec![n, c];
        shape.extend(&out_sp);
        let yf: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        out1(from_f32(xt.dtype(), shape, &yf)?)
    }))
}

fn affine_grid(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let align = ctx.attr_i("align_corners", 0)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let tt = input(inputs, 0)?;
        let theta: Vec<f64> = to_f32(tt)?.into_iter().map(|v| v as f64).collect();
        let size = ints_of(input(inputs, 1)?)?;
        let r = size.len().checked_sub(2).ok_or("size must have at least 3 values")?;
        if r != 2 && r != 3 {
            return Err(OpError::Msg(format!("AffineGrid supports 2-D and 3-D, got size {size:?}")));
        }
        let n = size[0] as usize;
        let sp: Vec<usize> = size[2..].iter().map(|&v| v.max(0) as usize).collect();
        let lin = |d: usize, i: usize| -> f64 {
            if align {
                if d <= 1 { 0.0 } else { -1.0 + 2.0 * i as f64 / (d as f64 - 1.0) }
            } else {
                (-1.0 + (2.0 * i as f64 + 1.0) / d as f64) as f64
            }
        };
        let npts: usize = sp.iter().product();
        let mut out = Vec::with_capacity(n * npts * r);
        for ni in 0..n {
            let th = &theta[ni * r * (r + 1)..(ni + 1) * r * (r + 1)];
            for p in 0..npts {
                // Coordinates in (x, y[, z]) order: x varies along the last spatial dim.
                let mut rem = p;
                let mut idx = vec![0usize; r];
                for ax in (0..r).rev() {
                    idx[ax] = rem % sp[ax];
                    rem /= sp[ax];
                }
                let mut base: Vec<f64> = (0..r).map(|k| lin(sp[r - 1 - k], idx[r - 1 - k])).collect();
                base.push(1.0);
                for row in 0..r {
                    let v: f64 = (0..=r).map(|k| th[row * (r + 1) + k] * base[k]).sum();
                    out.push(v as f32);
                }
            }
        }
        let mut shape = vec![n];
        shape.extend(&sp);
        shape.push(r);
        out1(from_f32(tt.dtype(), shape, &out)?)
    }))
}
