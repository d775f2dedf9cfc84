//! Pooling: MaxPool (with indices), AveragePool, LpPool, their Global forms, MaxUnpool.

use qaic_tensor::{DType, Tensor, Value};

use super::conv::{Geometry, Resolved};
use super::linalg::{from_f32, to_f32};
use super::util::{input, ints_of, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("MaxPool", 1, |c| pool(c, Kind::Max));
    r.add("AveragePool", 1, |c| pool(c, Kind::Avg));
    r.add("LpPool", 1, |c| pool(c, Kind::Lp));
    r.add("GlobalMaxPool", 1, |c| global(c, Kind::Max));
    r.add("GlobalAveragePool", 1, |c| global(c, Kind::Avg));
    r.add("GlobalLpPool", 1, |c| global(c, Kind::Lp));
    r.add("MaxUnpool", 9, max_unpool);
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Max,
    Avg,
    Lp,
}

struct PoolOp {
    kind: Kind,
    geo: Geometry,
    ceil: bool,
    count_include_pad: bool,
    p: f64,
    storage_order: i64,
    /// Whether the node asks for MaxPool's second output (argmax indices).
    indices: bool,
}

fn pool(ctx: &BuildCtx<'_>, kind: Kind) -> Result<Box<dyn Kernel>, OpError> {
    let geo = Geometry::from_ctx(ctx)?;
    if geo.kernel.is_none() {
        return Err(OpError::Msg("missing attribute kernel_shape".into()));
    }
    Ok(Box::new(PoolOp {
        kind,
        geo,
        ceil: ctx.attr_i("ceil_mode", 0)? != 0,
        count_include_pad: ctx.attr_i("count_include_pad", 0)? != 0,
        p: if ctx.opset < 2 { ctx.attr_f("p", 2.0)? as f64 } else { ctx.attr_i("p", 2)? as f64 },
        storage_order: ctx.attr_i("storage_order", 0)?,
        indices: ctx.has_output(1),
    }))
}

impl Kernel for PoolOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let xt = input(inputs, 0)?;
        if xt.rank() < 3 {
            return Err(OpError::Msg(format!("input must have rank >= 3, has shape {:?}", xt.shape())));
        }
        let kshape = self.geo.kernel.clone().unwrap_or_default();
        let sp = &xt.shape()[2..];
        let rs = self.geo.resolve(sp, &kshape, self.ceil)?;
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let isz: usize = sp.iter().product();
        let osz: usize = rs.out.iter().product();
        let mut shape = vec![n, c];
        shape.extend(&rs.out);
        // Integer MaxPool keeps its type exactly.
        if self.kind == Kind::Max && matches!(xt.dtype(), DType::I8 | DType::U8) {
            let x = super::quant::int_values(xt)?;
            let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let (y, _) = pool_nd(&xf, n * c, sp, &kshape, &rs, self, isz, osz);
            let yi: Vec<i64> = y.iter().map(|&v| v as i64).collect();
            return out1(super::quant::int_tensor(xt.dtype(), shape, &yi)?);
        }
        if self.kind == Kind::Max && !self.indices && xt.dtype() == DType::F32 {
            // The shared f32 kernel (parallel over planes), when it agrees on the geometry.
            let params = qaic_kernels::conv::ConvParams {
                kernel: kshape.clone(),
                strides: rs.strides.clone(),
                dilations: rs.dil.clone(),
                pads: rs.pb.iter().chain(&rs.pe).copied().collect(),
                group: 1,
            };
            if qaic_kernels::pool::pool_output_shape(&params, xt.shape(), self.ceil).is_ok_and(|s| s == shape) {
                let x = xt.view::<f32>()?;
                let mut y = qaic_tensor::recycle::reuse_vec::<f32>(n * c * osz);
                qaic_kernels::pool::max_pool(&params, self.ceil, &x, xt.shape(), &mut y, None, false)
                    .map_err(|e| OpError::Msg(e.to_string()))?;
                return out1(Tensor::from_vec(shape, y)?);
            }
        }
        let x: Vec<f64> = if xt.dtype() == DType::F64 { xt.to_vec::<f64>()? } else { to_f32(xt)?.into_iter().map(|v| v as f64).collect() };
        let (y, idx) = pool_nd(&x, n * c, sp, &kshape, &rs, self, isz, osz);
        let yt = if xt.dtype() == DType::F64 {
            Tensor::from_vec(shape.clone(), y)?
        } else {
            from_f32(xt.dtype(), shape.clone(), &y.iter().map(|&v| v as f32).collect::<Vec<_>>())?
        };
        let mut outs = vec![Some(Value::Tensor(yt))];
        if self.kind == Kind::Max {
            outs.push(Some(Value::Tensor(Tensor::from_vec(shape, idx)?)));
        }
        Ok(outs)
    }
}

/// Pools `planes` planes of spatial shape `sp`. Returns values and (MaxPool) argmax indices.
#[allow(clippy::too_many_arguments)]
fn pool_nd(x: &[f64], planes: usize, sp: &[usize], k: &[usize], rs: &Resolved, op: &PoolOp, isz: usize, osz: usize) -> (Vec<f64>, Vec<i64>) {
    let r = sp.len();
    let istr = qaic_tensor::strides(sp);
    let kprod: usize = k.iter().product();
    let mut y = vec![0f64; planes * osz];
    let mut idx = vec![0i64; if op.kind == Kind::Max { planes * osz } else { 0 }];
    let mut opos = vec![0usize; r];
    let mut koff = vec![0usize; r];
    // Window taps of every output position, computed once and shared by all planes.
    let mut taps: Vec<usize> = Vec::with_capacity(osz * kprod);
    let mut bounds: Vec<(usize, usize, usize)> = Vec::with_capacity(osz); // (start, end, padded count)
    for o in 0..osz {
        let mut rem = o;
        for d in (0..r).rev() {
            opos[d] = rem % rs.out[d];
            rem /= rs.out[d];
        }
        let start = taps.len();
        let mut padded_count = 0usize;
        for kk in 0..kprod {
            let mut rem = kk;
            for d in (0..r).rev() {
                koff[d] = rem % k[d];
                rem /= k[d];
            }
            let mut off = Some(0usize);
            let mut in_padded = true;
            for d in 0..r {
                let p = (opos[d] * rs.strides[d] + koff[d] * rs.dil[d]) as i64 - rs.pb[d] as i64;
                if p >= (sp[d] + rs.pe[d]) as i64 {
                    in_padded = false;
                }
                off = match off {
                    Some(v) if p >= 0 && (p as usize) < sp[d] => Some(v + p as usize * istr[d]),
                    _ => None,
                };
            }
            if in_padded {
                padded_count += 1;
            }
            if let Some(v) = off {
                taps.push(v);
            }
        }
        bounds.push((start, taps.len(), padded_count));
    }
    for pl in 0..planes {
        let xp = &x[pl * isz..(pl + 1) * isz];
        for (o, &(s0, s1, padded_count)) in bounds.iter().enumerate() {
            let t = &taps[s0..s1];
            let v = match op.kind {
                Kind::Max => {
                    let mut best = f64::NEG_INFINITY;
                    let mut bi = t.first().copied().unwrap_or(0);
                    for &ti in t {
                        if xp[ti] > best {
                            best = xp[ti];
                            bi = ti;
                        }
                    }
                    let flat = if op.storage_order == 1 && r == 2 { (bi % sp[1]) * sp[0] + bi / sp[1] } else { bi };
                    idx[pl * osz + o] = (pl * isz + flat) as i64;
                    best
                }
                Kind::Avg => {
                    let s: f64 = t.iter().map(|&ti| xp[ti]).sum();
                    let cnt = if op.count_include_pad { padded_count } else { t.len() };
                    if cnt == 0 { 0.0 } else { s / cnt as f64 }
                }
                Kind::Lp => t.iter().map(|&ti| xp[ti].abs().powf(op.p)).sum::<f64>().powf(1.0 / op.p),
            };
            y[pl * osz + o] = v;
        }
    }
    (y, idx)
}

fn global(ctx: &BuildCtx<'_>, kind: Kind) -> Result<Box<dyn Kernel>, OpError> {
    let p = ctx.attr_i("p", 2)? as f64;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        if xt.rank() < 2 {
            return Err(OpError::Msg(format!("input must have rank >= 2, has shape {:?}", xt.shape())));
        }
        let planes = xt.shape()[0] * xt.shape()[1];
        let isz: usize = xt.shape()[2..].iter().product();
        let x = to_f32(xt)?;
        let y: Vec<f32> = (0..planes)
            .map(|pl| {
                let xp = &x[pl * isz..(pl + 1) * isz];
                match kind {
                    Kind::Max => xp.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                    Kind::Avg => (xp.iter().map(|&v| v as f64).sum::<f64>() / isz as f64) as f32,
                    Kind::Lp => xp.iter().map(|&v| (v.abs() as f64).powf(p)).sum::<f64>().powf(1.0 / p) as f32,
                }
            })
            .collect();
        let mut shape = xt.shape()[..2].to_vec();
        shape.extend(std::iter::repeat_n(1, xt.rank() - 2));
        out1(from_f32(xt.dtype(), shape, &y)?)
    }))
}

fn max_unpool(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let geo = Geometry::from_ctx(ctx)?;
    let kshape = geo.kernel.clone().ok_or("missing attribute kernel_shape")?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let ind = ints_of(input(inputs, 1)?)?;
        let r = xt.rank() - 2;
        let sp = &xt.shape()[2..];
        let strides = geo.strides.clone().unwrap_or_else(|| vec![1; r]);
        let pads = geo.pads.clone().unwrap_or_else(|| vec![0; 2 * r]);
        // Indices address the tensor the pool saw (the inferred shape); an explicit
        // output_shape only pads that result at the end of each axis, as the reference does.
        let inferred: Vec<usize> =
            (0..r).map(|i| ((sp[i] - 1) * strides[i] + kshape[i]) as i64 - pads[i] - pads[i + r]).map(|v| v.max(0) as usize).collect();
        let out_sp: Vec<usize> = match opt_input(inputs, 2)? {
            Some(s) => ints_of(s)?[2..].iter().map(|&v| v.max(0) as usize).collect(),
            None => inferred.clone(),
        };
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let isz: usize = inferred.iter().product();
        let x = to_f32(xt)?;
        let mut dense = vec![0f32; n * c * isz];
        for (i, &v) in x.iter().enumerate() {
            let t = ind[i];
            if t < 0 || t as usize >= dense.len() {
                return Err(OpError::Msg(format!("index {t} is outside the unpooled tensor of {} elements", dense.len())));
            }
            dense[t as usize] = v;
        }
        let osz: usize = out_sp.iter().product();
        let mut y = vec![0f32; n * c * osz];
        let ostr = qaic_tensor::strides(&out_sp);
        let istr = qaic_tensor::strides(&inferred);
        for pl in 0..n * c {
            for i in 0..isz {
                let mut o = 0usize;
                let mut inside = true;
                for d in 0..r {
                    let coord = (i / istr[d]) % inferred[d];
                    if coord >= out_sp[d] {
                        inside = false;
                        break;
                    }
                    o += coord * ostr[d];
                }
                if inside {
                    y[pl * osz + o] = dense[pl * isz + i];
                }
            }
        }
        let mut shape = vec![n, c];
        shape.extend(&out_sp);
        out1(from_f32(xt.dtype(), shape, &y)?)
    }))
}
