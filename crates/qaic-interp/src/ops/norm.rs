//! Normalisation ops: BatchNormalization, InstanceNormalization, LayerNormalization,
//! GroupNormalization, LpNormalization, MeanVarianceNormalization, LRN; Dropout (inference).

use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{input, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("BatchNormalization", 1, batch_norm);
    r.add("InstanceNormalization", 1, instance_norm);
    r.add("LayerNormalization", 17, layer_norm);
    r.add("GroupNormalization", 18, group_norm);
    r.add("LpNormalization", 1, lp_norm);
    r.add("MeanVarianceNormalization", 9, mvn);
    r.add("LRN", 1, lrn);
    r.add("Dropout", 1, dropout);
}

type Outs = Result<Vec<Option<Value>>, OpError>;

fn floats_checked(t: &Tensor, what: &str) -> Result<Vec<f32>, OpError> {
    if !t.dtype().is_float() {
        return Err(OpError::Msg(format!("{what} must be a float tensor, got {}", t.dtype())));
    }
    to_f32(t)
}

/// Inference-mode batch normalisation, folded at plan time into a per-channel scale and shift
/// when the parameters are constants.
struct BatchNorm {
    epsilon: f32,
    folded: Option<(Vec<f32>, Vec<f32>)>,
    training: bool,
}

fn batch_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let epsilon = ctx.attr_f("epsilon", 1e-5)?;
    let training = ctx.attr_i("training_mode", 0)? != 0 || (ctx.opset < 9 && ctx.attr_i("is_test", 0)? == 0 && ctx.opset >= 6 && ctx.num_outputs() > 1);
    if ctx.opset < 6 && ctx.attr("consumed_inputs").is_some() {
        // Opset 1-5 carried `consumed_inputs`, meaningless for inference.
    }
    let folded = match (ctx.const_input(1), ctx.const_input(2), ctx.const_input(3), ctx.const_input(4)) {
        (Some(s), Some(b), Some(m), Some(v)) if !training => {
            let (s, b, m, v) = (to_f32(s)?, to_f32(b)?, to_f32(m)?, to_f32(v)?);
            let scale: Vec<f32> = s.iter().zip(&v).map(|(s, v)| s / (v + epsilon).sqrt()).collect();
            let shift: Vec<f32> = b.iter().zip(&m).zip(&scale).map(|((b, m), k)| b - m * k).collect();
            Some((scale, shift))
        }
        _ => None,
    };
    Ok(Box::new(BatchNorm { epsilon, folded, training }))
}

impl Kernel for BatchNorm {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let x = input(inputs, 0)?;
        if x.rank() < 2 {
            return Err(OpError::Msg(format!("input must have rank >= 2, has shape {:?}", x.shape())));
        }
        let c = x.shape()[1];
        let inner: usize = x.shape()[2..].iter().product();
        let n = x.shape()[0];
        // Inference on float32 with folded parameters: one pass, no copies of X, a recycled
        // output, channel planes split across threads (unfolded BatchNorms between quantized
        // convolutions run this at every layer).
        if let (false, Some((scale, shift)), DType::F32) = (self.training, &self.folded, x.dtype()) {
            if scale.len() != c || shift.len() != c {
                return Err(OpError::Msg(format!("parameters have {} values but X has {c} channels", scale.len())));
            }
            let xv = x.view::<f32>()?;
            let mut y = qaic_tensor::recycle::reuse_vec::<f32>(xv.len());
            let plane = inner.max(1);
            let planes = xv.len() / plane;
            let yp = qaic_kernels::threads::SendPtr(y.as_mut_ptr());
            let per = planes.div_ceil(qaic_kernels::threads::num_threads() * 2).max(1);
            let run = |lo: usize, hi: usize| {
                for p in lo..hi {
                    let (k, b) = (scale[p % c], shift[p % c]);
                    // SAFETY: each plane index writes its own `plane` outputs.
                    let dst = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p * plane), plane) };
                    for (d, &s) in dst.iter_mut().zip(&xv[p * plane..(p + 1) * plane]) {
                        *d = s * k + b;
                    }
                }
            };
            if xv.len() >= 1 << 15 {
                qaic_kernels::threads::parallel_for(planes.div_ceil(per), |i| run(i * per, ((i + 1) * per).min(planes)));
            } else {
                run(0, planes);
            }
            return out1(Tensor::from_vec(x.shape().to_vec(), y)?);
        }
        let xv = floats_checked(x, "X")?;
        let mut y = vec![0f32; xv.len()];
        if self.training {
            let s = to_f32(input(inputs, 1)?)?;
            let b = to_f32(input(inputs, 2)?)?;
            let rm = to_f32(input(inputs, 3)?)?;
            let rv = to_f32(input(inputs, 4)?)?;
            let momentum = 0.9f32;
            let cnt = (n * inner) as f64;
            let mut mean = vec![0f32; c];
            let mut var = vec![0f32; c];
            for ch in 0..c {
                let mut sum = 0f64;
                for b_ in 0..n {
                    sum += xv[(b_ * c + ch) * inner..(b_ * c + ch + 1) * inner].iter().map(|&v| v as f64).sum::<f64>();
                }
                let m = sum / cnt;
                let mut sq = 0f64;
                for b_ in 0..n {
                    sq += xv[(b_ * c + ch) * inner..(b_ * c + ch + 1) * inner].iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>();
                }
                mean[ch] = m as f32;
                var[ch] = (sq / cnt) as f32;
                let k = s[ch] / (var[ch] + self.epsilon).sqrt();
                for b_ in 0..n {
                    let base = (b_ * c + ch) * inner;
                    for i in 0..inner {
                        y[base + i] = (xv[base + i] - mean[ch]) * k + b[ch];
                    }
                }
            }
            let run_mean: Vec<f32> = rm.iter().zip(&mean).map(|(r, m)| r * momentum + m * (1.0 - momentum)).collect();
            let run_var: Vec<f32> = rv.iter().zip(&var).map(|(r, v)| r * momentum + v * (1.0 - momentum)).collect();
            let dt = x.dtype();
            let mut outs = vec![Some(Value::Tensor(from_f32(dt, x.shape().to_vec(), &y)?))];
            outs.push(Some(Value::Tensor(from_f32(input(inputs, 3)?.dtype(), vec![c], &run_mean)?)));
            outs.push(Some(Value::Tensor(from_f32(input(inputs, 4)?.dtype(), vec![c], &run_var)?)));
            return Ok(outs);
        }
        let (scale, shift) = match &self.folded {
            Some((a, b)) => (a.clone(), b.clone()),
            None => {
                let s = to_f32(input(inputs, 1)?)?;
                let b = to_f32(input(inputs, 2)?)?;
                let m = to_f32(input(inputs, 3)?)?;
                let v = to_f32(input(inputs, 4)?)?;
                let scale: Vec<f32> = s.iter().zip(&v).map(|(s, v)| s / (v + self.epsilon).sqrt()).collect();
                let shift: Vec<f32> = b.iter().zip(&m).zip(&scale).map(|((b, m), k)| b - m * k).collect();
                (scale, shift)
            }
        };
        if scale.len() != c || shift.len() != c {
            return Err(OpError::Msg(format!("parameters have {} values but X has {c} channels", scale.len())));
        }
        for (blk, (src, dst)) in xv.chunks(inner.max(1)).zip(y.chunks_mut(inner.max(1))).enumerate() {
            let ch = blk % c;
            let (k, b) = (scale[ch], shift[ch]);
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s * k + b;
            }
        }
        out1(from_f32(x.dtype(), x.shape().to_vec(), &y)?)
    }
}

/// Normalises each contiguous group of `inner` values: `(x - mean) / sqrt(var + eps)`,
/// accumulating in f64 for accuracy. Returns (mean, inv_std) per group.
fn normalize_groups(x: &[f32], inner: usize, eps: f32, y: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let groups = if inner == 0 { 0 } else { x.len() / inner };
    let mut means = Vec::with_capacity(groups);
    let mut invs = Vec::with_capacity(groups);
    for g in 0..groups {
        let xs = &x[g * inner..(g + 1) * inner];
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / inner as f64;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (d, &s) in y[g * inner..(g + 1) * inner].iter_mut().zip(xs) {
            *d = ((s as f64 - mean) * inv) as f32;
        }
        means.push(mean as f32);
        invs.push(inv as f32);
    }
    (means, invs)
}

fn instance_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let eps = ctx.attr_f("epsilon", 1e-5)?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let s = to_f32(input(inputs, 1)?)?;
        let b = to_f32(input(inputs, 2)?)?;
        if x.rank() < 2 {
            return Err(OpError::Msg("input must have rank >= 2".into()));
        }
        let c = x.shape()[1];
        let inner: usize = x.shape()[2..].iter().product();
        let xv = floats_checked(x, "input")?;
        let mut y = qaic_tensor::recycle::reuse_vec::<f32>(xv.len());
        normalize_groups(&xv, inner, eps, &mut y);
        for (g, blk) in y.chunks_mut(inner.max(1)).enumerate() {
            let ch = g % c;
            for v in blk {
                *v = *v * s[ch] + b[ch];
            }
        }
        out1(from_f32(x.dtype(), x.shape().to_vec(), &y)?)
    }))
}

fn layer_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", -1)?;
    let eps = ctx.attr_f("epsilon", 1e-5)?;
    let stash = ctx.attr_i("stash_type", 1)?;
    let _ = stash; // statistics are always computed in f64 here, more precise than either stash type
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let scale = to_f32(input(inputs, 1)?)?;
        let bias = opt_input(inputs, 2)?.map(to_f32).transpose()?;
        let a = norm_axis(axis, x.rank())?;
        let inner: usize = x.shape()[a..].iter().product();
        let xv = floats_checked(x, "X")?;
        let mut y = qaic_tensor::recycle::reuse_vec::<f32>(xv.len());
        let (mean, inv) = normalize_groups(&xv, inner, eps, &mut y);
        // Scale and bias broadcast against the normalised trailing block.
        let sidx = super::util::broadcast_index(input(inputs, 1)?.shape(), &x.shape()[a..]);
        let bidx = match opt_input(inputs, 2)? {
            Some(b) => Some(super::util::broadcast_index(b.shape(), &x.shape()[a..])),
            None => None,
        };
        for blk in y.chunks_mut(inner.max(1)) {
            for (i, v) in blk.iter_mut().enumerate() {
                *v *= scale[sidx[i] as usize];
                if let (Some(b), Some(bi)) = (&bias, &bidx) {
                    *v += b[bi[i] as usize];
                }
            }
        }
        let mut outs = vec![Some(Value::Tensor(from_f32(x.dtype(), x.shape().to_vec(), &y)?))];
        let mut stat_shape = x.shape()[..a].to_vec();
        stat_shape.extend(std::iter::repeat_n(1, x.rank() - a));
        outs.push(Some(Value::Tensor(Tensor::from_vec(stat_shape.clone(), mean)?)));
        outs.push(Some(Value::Tensor(Tensor::from_vec(stat_shape, inv)?)));
        Ok(outs)
    }))
}

fn group_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let eps = ctx.attr_f("epsilon", 1e-5)?;
    let groups = ctx.attr_opt_i("num_groups")?.ok_or("missing attribute num_groups")?;
    let per_channel = ctx.opset >= 21;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let s = to_f32(input(inputs, 1)?)?;
        let b = to_f32(input(inputs, 2)?)?;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let g = groups as usize;
        if g == 0 || c % g != 0 {
            return Err(OpError::Msg(format!("{c} channels cannot form {groups} groups")));
        }
        let spatial: usize = x.shape()[2..].iter().product();
        let inner = c / g * spatial;
        let xv = floats_checked(x, "X")?;
        let mut y = qaic_tensor::recycle::reuse_vec::<f32>(xv.len());
        normalize_groups(&xv, inner, eps, &mut y);
        for bi in 0..n {
            for ch in 0..c {
                let (k, sh) = if per_channel { (s[ch], b[ch]) } else { (s[ch / (c / g)], b[ch / (c / g)]) };
                for v in &mut y[(bi * c + ch) * spatial..(bi * c + ch + 1) * spatial] {
                    *v = *v * k + sh;
                }
            }
        }
        out1(from_f32(x.dtype(), x.shape().to_vec(), &y)?)
    }))
}

fn lp_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", -1)?;
    let p = ctx.attr_i("p", 2)?;
    if p != 1 && p != 2 {
        return Err(OpError::Msg(format!("p must be 1 or 2, got {p}")));
    }
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let a = norm_axis(axis, x.rank())?;
        let dim = x.shape()[a];
        let inner: usize = x.shape()[a + 1..].iter().product();
        let outer: usize = x.shape()[..a].iter().product();
        let xv = floats_checked(x, "input")?;
        let mut y = xv.clone();
        for o in 0..outer {
            for i in 0..inner {
                let idx = |k: usize| (o * dim + k) * inner + i;
                let norm: f64 = if p == 1 {
                    (0..dim).map(|k| (xv[idx(k)] as f64).abs()).sum()
                } else {
                    (0..dim).map(|k| (xv[idx(k)] as f64).powi(2)).sum::<f64>().sqrt()
                };
                for k in 0..dim {
                    y[idx(k)] = if norm == 0.0 { 0.0 } else { (xv[idx(k)] as f64 / norm) as f32 };
                }
            }
        }
        out1(from_f32(x.dtype(), x.shape().to_vec(), &y)?)
    }))
}

fn mvn(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axes = ctx.attr_ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let rank = x.rank();
        let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?;
        // Move reduced axes last, normalise contiguous groups, move back.
        let mut perm: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
        perm.extend(&axes);
        let t = super::util::permute(x, &perm)?;
        let inner: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let xv = floats_checked(&t, "input")?;
        let mut y = vec![0f32; xv.len()];
        normalize_groups(&xv, inner, 1e-9, &mut y);
        // ONNX's MVN divides by sqrt(var) + 1e-9 rather than sqrt(var + eps): recompute exactly.
        for blk in 0..xv.len() / inner.max(1) {
            let xs = &xv[blk * inner..(blk + 1) * inner];
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / inner as f64;
            let sd = (xs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / inner as f64 - mean * mean).max(0.0).sqrt();
            for (d, &s) in y[blk * inner..(blk + 1) * inner].iter_mut().zip(xs) {
                *d = ((s as f64 - mean) / (sd + 1e-9)) as f32;
            }
        }
        let yt = from_f32(x.dtype(), t.shape().to_vec(), &y)?;
        let mut inv = vec![0usize; rank];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        out1(super::util::permute(&yt, &inv)?)
    }))
}

fn lrn(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let alpha = ctx.attr_f("alpha", 1e-4)?;
    let beta = ctx.attr_f("beta", 0.75)?;
    let bias = ctx.attr_f("bias", 1.0)?;
    let size = ctx.attr_opt_i("size")?.ok_or("missing attribute size")? as usize;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let inner: usize = x.shape()[2..].iter().product();
        let xv = floats_checked(x, "X")?;
        let mut y = vec![0f32; xv.len()];
        let lo = (size - 1) / 2;
        let hi = size.div_ceil(2).saturating_sub(1);
        for b in 0..n {
            for ch in 0..c {
                let c0 = ch.saturating_sub(lo);
                let c1 = (ch + hi).min(c - 1);
                for i in 0..inner {
                    let sq: f64 = (c0..=c1).map(|k| (xv[(b * c + k) * inner + i] as f64).powi(2)).sum();
                    let v = xv[(b * c + ch) * inner + i] as f64;
                    y[(b * c + ch) * inner + i] = (v / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64)) as f32;
                }
            }
        }
        out1(from_f32(x.dtype(), x.shape().to_vec(), &y)?)
    }))
}

fn dropout(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let opset = ctx.opset;
    let fixed_ratio = ctx.attr_f("ratio", 0.5)?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let training = if opset >= 12 {
            opt_input(inputs, 2)?.map(|t| super::util::ints_of(t).map(|v| v[0] != 0).or_else(|_| t.view::<bool>().map(|b| b[0]))).transpose()?.unwrap_or(false)
        } else {
            false
        };
        let ratio = if opset >= 12 { opt_input(inputs, 1)?.map(|t| super::util::floats_of(t).map(|v| v[0])).transpose()?.unwrap_or(0.5) } else { fixed_ratio };
        if training && ratio != 0.0 {
            return Err(OpError::Unsupported("Dropout in training mode (random masks) is not deterministic".into()));
        }
        let mask = Tensor::from_vec(x.shape().to_vec(), vec![true; x.len()])?;
        Ok(vec![Some(Value::Tensor(x.clone())), Some(Value::Tensor(mask))])
    }))
}
