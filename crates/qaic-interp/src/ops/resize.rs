//! Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9): nearest, linear and cubic
//! interpolation along any axes, every coordinate transformation mode, antialias, exclude_outside
//! and keep_aspect_ratio_policy, following the ONNX reference implementation. Interpolation is
//! separable, so it is applied one axis at a time.

use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{floats_of, input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("Resize", 10, resize);
    r.add("Upsample", 7, upsample);
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Policy {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Clone, Debug)]
struct ResizeOp {
    opset: i64,
    mode: Mode,
    coord: Coord,
    nearest: NearestMode,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    antialias: bool,
    axes: Option<Vec<i64>>,
    policy: Policy,
    /// Upsample: scales from the attribute (opset 7).
    attr_scales: Option<Vec<f32>>,
}

fn parse_mode(s: &str) -> Result<Mode, OpError> {
    Ok(match s {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        "cubic" | "bicubic" => Mode::Cubic,
        m => return Err(OpError::Msg(format!("unknown mode `{m}`"))),
    })
}

fn resize(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let coord = if ctx.opset < 11 {
        Coord::Asymmetric
    } else {
        match ctx.attr_s("coordinate_transformation_mode", "half_pixel")?.as_str() {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_crop_and_resize" => Coord::TfCropAndResize,
            "tf_half_pixel_for_nn" => return Err(OpError::Unsupported("coordinate_transformation_mode tf_half_pixel_for_nn".into())),
            m => return Err(OpError::Msg(format!("unknown coordinate_transformation_mode `{m}`"))),
        }
    };
    let nearest = match ctx.attr_s("nearest_mode", "round_prefer_floor")?.as_str() {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        m => return Err(OpError::Msg(format!("unknown nearest_mode `{m}`"))),
    };
    let policy = match ctx.attr_s("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => Policy::Stretch,
        "not_larger" => Policy::NotLarger,
        "not_smaller" => Policy::NotSmaller,
        m => return Err(OpError::Msg(format!("unknown keep_aspect_ratio_policy `{m}`"))),
    };
    Ok(Box::new(ResizeOp {
        opset: ctx.opset,
        mode: parse_mode(&ctx.attr_s("mode", "nearest")?)?,
        coord,
        nearest,
        cubic_a: ctx.attr_f("cubic_coeff_a", -0.75)? as f64,
        exclude_outside: ctx.attr_i("exclude_outside", 0)? != 0,
        extrapolation: ctx.attr_f("extrapolation_value", 0.0)? as f64,
        antialias: ctx.attr_i("antialias", 0)? != 0,
        axes: ctx.attr_ints("axes")?,
        policy,
        attr_scales: None,
    }))
}

fn upsample(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(ResizeOp {
        opset: 10,
        mode: parse_mode(&ctx.attr_s("mode", "nearest")?)?,
        coord: Coord::Asymmetric,
        nearest: NearestMode::Floor,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        antialias: false,
        axes: None,
        policy: Policy::Stretch,
        attr_scales: if ctx.opset < 9 { ctx.attr_floats("scales")? } else { None },
    }))
}

impl Kernel for ResizeOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let x = input(inputs, 0)?;
        let rank = x.rank();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a.iter().map(|&v| norm_axis(v, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        let (roi, scales_in, sizes_in) = if let Some(s) = &self.attr_scales {
            (None, Some(s.clone()), None)
        } else if self.opset < 11 {
            (None, Some(floats_of(input(inputs, 1)?)?), None)
        } else {
            (
                nonempty(opt_input(inputs, 1)?).map(floats_of).transpose()?,
                nonempty(opt_input(inputs, 2)?).map(floats_of).transpose()?,
                nonempty(opt_input(inputs, 3)?).map(ints_of).transpose()?,
            )
        };
        // Per-axis scale and output length for all `rank` axes (identity where not resized).
        let mut scales = vec![1f64; rank];
        let mut out_shape = x.shape().to_vec();
        match (scales_in, sizes_in) {
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(OpError::Msg(format!("{} scales for {} axes", s.len(), axes.len())));
                }
                for (&a, &v) in axes.iter().zip(&s) {
                    if v <= 0.0 {
                        return Err(OpError::Msg(format!("scale {v} must be positive")));
                    }
                    scales[a] = v as f64;
                    out_shape[a] = (x.shape()[a] as f64 * v as f64).floor() as usize;
                }
            }
            (None, Some(sz)) => {
                if sz.len() != axes.len() {
                    return Err(OpError::Msg(format!("{} sizes for {} axes", sz.len(), axes.len())));
                }
                let ratio: Vec<f64> = axes.iter().zip(&sz).map(|(&a, &v)| v as f64 / x.shape()[a] as f64).collect();
                let common = match self.policy {
                    Policy::Stretch => None,
                    Policy::NotLarger => ratio.iter().copied().reduce(f64::min),
                    Policy::NotSmaller => ratio.iter().copied().reduce(f64::max),
                };
                for (i, &a) in axes.iter().enumerate() {
                    match common {
                        None => {
                            scales[a] = ratio[i];
                            out_shape[a] = sz[i].max(0) as usize;
                        }
                        Some(c) => {
                            scales[a] = c;
                            out_shape[a] = round_half_even(c * x.shape()[a] as f64) as usize;
                        }
                    }
                }
            }
            (Some(_), Some(_)) => return Err(OpError::Msg("only one of scales and sizes may be given".into())),
            (None, None) => return Err(OpError::Msg("one of scales and sizes must be given".into())),
        }
        let roi_full: Option<Vec<f64>> = roi.map(|r| {
            let mut full = vec![0f64; 2 * rank];
            for a in 0..rank {
                full[rank + a] = 1.0;
            }
            if r.len() == 2 * axes.len() {
                for (i, &a) in axes.iter().enumerate() {
                    full[a] = r[i] as f64;
                    full[rank + a] = r[axes.len() + i] as f64;
                }
            }
            full
        });

        let is_float = x.dtype().is_float();
        if !is_float && self.mode != Mode::Nearest {
            return Err(OpError::Unsupported(format!("{:?} interpolation of {}", self.mode, x.dtype())));
        }
        if !is_float || (self.mode == Mode::Nearest && self.coord != Coord::TfCropAndResize) {
            // Nearest is an index gather for every type (exact, no float round trip).
            return out1(self.gather_nearest(x, &out_shape, &scales, roi_full.as_deref())?);
        }
        let mut data: Vec<f64> = to_f32(x)?.into_iter().map(|v| v as f64).collect();
        let mut shape = x.shape().to_vec();
        for a in 0..rank {
            if out_shape[a] == shape[a] && scales[a] == 1.0 && self.coord != Coord::TfCropAndResize {
                continue;
            }
            let taps = self.taps(shape[a], out_shape[a], scales[a], roi_full.as_ref().map(|r| (r[a], r[rank + a])));
            data = apply_axis(&data, &shape, a, out_shape[a], &taps, self.extrapolation);
            shape[a] = out_shape[a];
        }
        let vals: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        out1(if x.dtype() == DType::F64 {
            Tensor::from_vec(shape, data)?
        } else {
            from_f32(x.dtype(), shape, &vals)?
        })
    }
}

/// For one output position: `None` = extrapolation value, else (source index, weight) pairs.
type Taps = Vec<Option<Vec<(usize, f64)>>>;

fn nonempty(t: Option<&Tensor>) -> Option<&Tensor> {
    t.filter(|t| !t.is_empty())
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 { 2.0 * (v / 2.0).round() } else { r }
}

impl ResizeOp {
    /// Source coordinate of output index `i`, as the ONNX reference computes it: the "output
    /// width" in these formulas is `scale * len_in` (a float), not the rounded output length.
    fn source_coord(&self, i: usize, len_in: usize, len_out: usize, scale: f64, roi: Option<(f64, f64)>) -> f64 {
        let xr = i as f64;
        let li = len_in as f64;
        let lo = scale * li;
        match self.coord {
            Coord::HalfPixel => (xr + 0.5) / scale - 0.5,
            Coord::HalfPixelSymmetric => {
                let adj = len_out as f64 / lo;
                let center = li / 2.0;
                let offset = center * (1.0 - adj);
                offset + (xr + 0.5) / scale - 0.5
            }
            Coord::PytorchHalfPixel => {
                if lo == 1.0 {
                    -0.5
                } else {
                    (xr + 0.5) / scale - 0.5
                }
            }
            Coord::AlignCorners => {
                if lo == 1.0 {
                    0.0
                } else {
                    xr * (li - 1.0) / (lo - 1.0)
                }
            }
            Coord::Asymmetric => xr / scale,
            Coord::TfCropAndResize => {
                let (s, e) = roi.unwrap_or((0.0, 1.0));
                let base = if lo == 1.0 { (e - s) * (li - 1.0) / 2.0 } else { xr * (e - s) * (li - 1.0) / (lo - 1.0) };
                base + s * (li - 1.0)
            }
        }
    }

    fn nearest_index(&self, x: f64, len_in: usize) -> usize {
        let f = x.floor();
        let v = match self.nearest {
            NearestMode::RoundPreferFloor => {
                if x - f == 0.5 {
                    f
                } else {
                    x.round()
                }
            }
            NearestMode::RoundPreferCeil => {
                if x - f == 0.5 {
                    f + 1.0
                } else {
                    x.round()
                }
            }
            NearestMode::Floor => f,
            NearestMode::Ceil => x.ceil(),
        };
        v.clamp(0.0, (len_in as f64 - 1.0).max(0.0)) as usize
    }

    fn taps(&self, len_in: usize, len_out: usize, scale: f64, roi: Option<(f64, f64)>) -> Taps {
        (0..len_out)
            .map(|i| {
                let x = self.source_coord(i, len_in, len_out, scale, roi);
                if self.coord == Coord::TfCropAndResize && (x < 0.0 || x > len_in as f64 - 1.0) {
                    return None;
                }
                Some(match self.mode {
                    Mode::Nearest => vec![(self.nearest_index(x, len_in), 1.0)],
                    Mode::Linear | Mode::Cubic => self.filter_taps(x, len_in, scale),
                })
            })
            .collect()
    }

    /// Linear/cubic taps around `x`, widened for antialiased downsampling, edge-clamped or
    /// (exclude_outside) dropped and renormalised.
    fn filter_taps(&self, x: f64, len_in: usize, scale: f64) -> Vec<(usize, f64)> {
        let aa_scale = if self.antialias && scale < 1.0 { scale } else { 1.0 };
        let radius = match self.mode {
            Mode::Linear => 1.0,
            _ => 2.0,
        };
        let a = self.cubic_a;
        let kernel = |t: f64| -> f64 {
            let t = t.abs();
            match self.mode {
                Mode::Linear => (1.0 - t).max(0.0),
                _ => {
                    if t < 1.0 {
                        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
                    } else if t < 2.0 {
                        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
                    } else {
                        0.0
                    }
                }
            }
        };
        let start = (-radius / aa_scale).floor() as i64 + 1;
        let end = (radius / aa_scale).ceil() as i64;
        let base = x.floor() as i64;
        let mut taps: Vec<(i64, f64)> = Vec::new();
        for k in start..=end {
            let idx = base + k;
            let w = kernel((idx as f64 - x) * aa_scale);
            if w != 0.0 {
                taps.push((idx, w));
            }
        }
        if taps.is_empty() {
            taps.push((base.clamp(0, len_in as i64 - 1), 1.0));
        }
        if self.exclude_outside {
            taps.retain(|(i, _)| *i >= 0 && *i < len_in as i64);
        }
        let sum: f64 = taps.iter().map(|t| t.1).sum();
        let norm = if self.antialias && scale < 1.0 || self.exclude_outside { sum } else { 1.0 };
        taps.into_iter()
            .map(|(i, w)| (i.clamp(0, len_in as i64 - 1) as usize, if norm != 0.0 { w / norm } else { w }))
            .collect()
    }

    fn gather_nearest(&self, x: &Tensor, out_shape: &[usize], scales: &[f64], roi: Option<&[f64]>) -> Result<Tensor, OpError> {
        let rank = x.rank();
        let es = super::util::elem_bytes(x.dtype())?;
        let per_axis: Vec<Vec<usize>> = (0..rank)
            .map(|a| {
                let r = roi.map(|r| (r[a], r[rank + a]));
                self.taps(x.shape()[a], out_shape[a], scales[a], r)
                    .into_iter()
                    .map(|t| t.map(|v| v[0].0).unwrap_or(0))
                    .collect()
            })
            .collect();
        let x = x.clone().aligned();
        let n: usize = out_shape.iter().product();
        macro_rules! go {
            ($t:ty) => {{
                let src: &[$t] = bytemuck::cast_slice(x.raw_bytes()?);
                let out: Vec<$t> = gather_rows(src, x.shape(), out_shape, &per_axis, n);
                Tensor::from_bytes(x.dtype(), out_shape.to_vec(), bytes::Bytes::from(bytemuck::cast_slice::<$t, u8>(&out).to_vec()))?
            }};
        }
        let t = match es {
            1 => go!(u8),
            2 => go!(u16),
            4 => go!(u32),
            8 => go!(u64),
            _ => return Err(OpError::Msg(format!("nearest resize of {} elements", x.dtype()))),
        };
        Ok(t.aligned())
    }
}

/// Nearest-neighbour gather by output rows: the last axis through a column table, and a row
/// whose source row equals the previous one's (upsampling) copied from it.
fn gather_rows<T: Copy + Default>(src: &[T], in_shape: &[usize], out_shape: &[usize], per_axis: &[Vec<usize>], n: usize) -> Vec<T> {
    let rank = in_shape.len();
    if rank == 0 || n == 0 {
        return src.iter().take(n).copied().collect();
    }
    let strides = qaic_tensor::strides(in_shape);
    let ow = out_shape[rank - 1];
    let cols = &per_axis[rank - 1];
    let rows = n / ow.max(1);
    let mut out = vec![T::default(); n];
    let mut idx = vec![0usize; rank - 1];
    let mut prev_base = usize::MAX;
    for r in 0..rows {
        let base: usize = (0..rank - 1).map(|a| per_axis[a][idx[a]] * strides[a]).sum();
        let (done, rest) = out.split_at_mut(r * ow);
        let dst = &mut rest[..ow];
        if base == prev_base {
            dst.copy_from_slice(&done[(r - 1) * ow..]);
        } else {
            let line = &src[base..];
            for (d, &c) in dst.iter_mut().zip(cols) {
                *d = line[c];
            }
        }
        prev_base = base;
        for a in (0..rank - 1).rev() {
            idx[a] += 1;
            if idx[a] < out_shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// Applies per-position taps along `axis`, producing `len_out` positions there.
fn apply_axis(data: &[f64], shape: &[usize], axis: usize, len_out: usize, taps: &Taps, extrapolation: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len_in = shape[axis];
    let mut out = vec![0f64; outer * len_out * inner];
    for o in 0..outer {
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(o * len_out + j) * inner..(o * len_out + j + 1) * inner];
            match t {
                None => dst.fill(extrapolation),
                Some(t) => {
                    for &(src_i, w) in t {
                        let src = &data[(o * len_in + src_i) * inner..(o * len_in + src_i + 1) * inner];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += w * s;
                        }
                    }
                }
            }
        }
    }
    out
}
