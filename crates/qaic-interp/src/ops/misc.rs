//! Assorted tensor ops: CenterCropPad, Col2Im.

use qaic_tensor::{Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{elem_bytes, input, ints_of, norm_axis, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("CenterCropPad", 18, center_crop_pad);
    r.add("Col2Im", 18, col2im);
}

fn center_crop_pad(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axes = ctx.attr_ints("axes")?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let target = ints_of(input(inputs, 1)?)?;
        let rank = x.rank();
        let axes: Vec<usize> = match &axes {
            Some(a) => a.iter().map(|&v| norm_axis(v, rank)).collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        if axes.len() != target.len() {
            return Err(OpError::Msg(format!("{} sizes for {} axes", target.len(), axes.len())));
        }
        let mut out_shape = x.shape().to_vec();
        // Per axis: offset added to an output index to get the input index (may be negative).
        let mut shift = vec![0i64; rank];
        for (&a, &t) in axes.iter().zip(&target) {
            if t < 0 {
                return Err(OpError::Msg(format!("size {t} is negative")));
            }
            let dim = x.shape()[a] as i64;
            out_shape[a] = t as usize;
            shift[a] = if t < dim { (dim - t) / 2 } else { -((t - dim) / 2) };
        }
        let es = elem_bytes(x.dtype())?;
        let src = x.raw_bytes()?;
        let n: usize = out_shape.iter().product();
        let in_strides = qaic_tensor::strides(x.shape());
        let mut out = vec![0u8; n * es];
        let mut idx = vec![0usize; rank];
        for o in 0..n {
            let mut off = Some(0usize);
            for a in 0..rank {
                let i = idx[a] as i64 + shift[a];
                off = match off {
                    Some(v) if i >= 0 && (i as usize) < x.shape()[a] => Some(v + i as usize * in_strides[a]),
                    _ => None,
                };
            }
            if let Some(s) = off {
                out[o * es..(o + 1) * es].copy_from_slice(&src[s * es..(s + 1) * es]);
            }
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < out_shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        out1(Tensor::from_bytes(x.dtype(), out_shape, bytes::Bytes::from(out))?.aligned())
    }))
}

fn col2im(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let dil = ctx.attr_ints("dilations")?;
    let pads = ctx.attr_ints("pads")?;
    let strides = ctx.attr_ints("strides")?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let image: Vec<usize> = ints_of(input(inputs, 1)?)?.iter().map(|&v| v.max(0) as usize).collect();
        let block: Vec<usize> = ints_of(input(inputs, 2)?)?.iter().map(|&v| v.max(0) as usize).collect();
        let r = image.len();
        if block.len() != r || xt.rank() != 3 {
            return Err(OpError::Msg(format!("input must be [N, C*K, L] with image and block shapes of equal rank, got {:?}", xt.shape())));
        }
        let dil: Vec<usize> = dil.clone().unwrap_or_else(|| vec![1; r]).iter().map(|&v| v as usize).collect();
        let st: Vec<usize> = strides.clone().unwrap_or_else(|| vec![1; r]).iter().map(|&v| v as usize).collect();
        let pd: Vec<i64> = pads.clone().unwrap_or_else(|| vec![0; 2 * r]);
        let kprod: usize = block.iter().product();
        let (n, ck, l) = (xt.shape()[0], xt.shape()[1], xt.shape()[2]);
        if kprod == 0 || ck % kprod != 0 {
            return Err(OpError::Msg(format!("dimension 1 ({ck}) is not a multiple of the block size {kprod}")));
        }
        let c = ck / kprod;
        let cols: Vec<usize> = (0..r)
            .map(|i| ((image[i] as i64 + pd[i] + pd[i + r] - (dil[i] * (block[i] - 1) + 1) as i64) / st[i] as i64 + 1).max(0) as usize)
            .collect();
        if cols.iter().product::<usize>() != l {
            return Err(OpError::Msg(format!("{l} blocks given but the shapes imply {}", cols.iter().product::<usize>())));
        }
        let x = to_f32(xt)?;
        let isz: usize = image.iter().product();
        let istr = qaic_tensor::strides(&image);
        let mut out = vec![0f32; n * c * isz];
        for b in 0..n {
            for cc in 0..c {
                for k in 0..kprod {
                    // kernel offset per dim
                    let mut rem = k;
                    let mut koff = vec![0usize; r];
                    for d in (0..r).rev() {
                        koff[d] = rem % block[d];
                        rem /= block[d];
                    }
                    for blk in 0..l {
                        let mut rem = blk;
                        let mut pos = Some(0usize);
                        let mut bidx = vec![0usize; r];
                        for d in (0..r).rev() {
                            bidx[d] = rem % cols[d];
                            rem /= cols[d];
                        }
                        for d in 0..r {
                            let p = (bidx[d] * st[d]) as i64 - pd[d] + (koff[d] * dil[d]) as i64;
                            pos = match pos {
                                Some(v) if p >= 0 && (p as usize) < image[d] => Some(v + p as usize * istr[d]),
                                _ => None,
                            };
                        }
                        if let Some(p) = pos {
                            out[(b * c + cc) * isz + p] += x[(b * ck + cc * kprod + k) * l + blk];
                        }
                    }
                }
            }
        }
        let mut shape = vec![n, c];
        shape.extend(&image);
        out1(from_f32(xt.dtype(), shape, &out)?)
    }))
}
