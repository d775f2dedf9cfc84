//! Detection ops: NonMaxSuppression (as the ONNX reference: score filter, greedy IoU
//! suppression, per batch and class).

use qaic_tensor::{Tensor, Value};

use super::util::{floats_of, input, ints_of, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("NonMaxSuppression", 10, nms);
}

fn min_max(a: f32, b: f32) -> (f32, f32) {
    if a >= b { (b, a) } else { (a, b) }
}

/// Whether two boxes overlap by more than `thr` (IoU), in either box encoding.
fn suppress(b1: &[f32], b2: &[f32], center: bool, thr: f32) -> bool {
    let (x1a, x1b, y1a, y1b, x2a, x2b, y2a, y2b) = if center {
        (
            b1[0] - b1[2] / 2.0, b1[0] + b1[2] / 2.0, b1[1] - b1[3] / 2.0, b1[1] + b1[3] / 2.0,
            b2[0] - b2[2] / 2.0, b2[0] + b2[2] / 2.0, b2[1] - b2[3] / 2.0, b2[1] + b2[3] / 2.0,
        )
    } else {
        let (x1a, x1b) = min_max(b1[1], b1[3]);
        let (y1a, y1b) = min_max(b1[0], b1[2]);
        let (x2a, x2b) = min_max(b2[1], b2[3]);
        let (y2a, y2b) = min_max(b2[0], b2[2]);
        (x1a, x1b, y1a, y1b, x2a, x2b, y2a, y2b)
    };
    let ix = x1b.min(x2b) - x1a.max(x2a);
    let iy = y1b.min(y2b) - y1a.max(y2a);
    if ix <= 0.0 || iy <= 0.0 {
        return false;
    }
    let inter = ix * iy;
    let a1 = (x1b - x1a) * (y1b - y1a);
    let a2 = (x2b - x2a) * (y2b - y2a);
    let union = a1 + a2 - inter;
    if a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > thr
}

fn nms(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let center = ctx.attr_i("center_point_box", 0)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let bt = input(inputs, 0)?;
        let st = input(inputs, 1)?;
        let boxes = floats_of(bt)?;
        let scores = floats_of(st)?;
        let nonempty = |i: usize| -> Result<Option<&Tensor>, OpError> { Ok(opt_input(inputs, i)?.filter(|t| !t.is_empty())) };
        let max_out = nonempty(2)?.map(|t| ints_of(t).map(|v| v[0].max(0) as usize)).transpose()?.unwrap_or(0);
        let iou = nonempty(3)?.map(|t| floats_of(t).map(|v| v[0])).transpose()?.unwrap_or(0.0);
        let score_thr = nonempty(4)?.map(|t| floats_of(t).map(|v| v[0])).transpose()?;
        if bt.rank() != 3 || st.rank() != 3 || bt.shape()[2] != 4 {
            return Err(OpError::Msg(format!("boxes {:?} must be [B, N, 4] and scores {:?} [B, C, N]", bt.shape(), st.shape())));
        }
        let (nb, nbox) = (bt.shape()[0], bt.shape()[1]);
        let nc = st.shape()[1];
        if st.shape()[0] != nb || st.shape()[2] != nbox {
            return Err(OpError::Msg(format!("scores {:?} do not match boxes {:?}", st.shape(), bt.shape())));
        }
        let mut selected: Vec<i64> = Vec::new();
        for b in 0..nb {
            for c in 0..nc {
                let sc = &scores[(b * nc + c) * nbox..(b * nc + c + 1) * nbox];
                let mut cand: Vec<(f32, usize)> =
                    (0..nbox).filter(|&i| score_thr.is_none_or(|t| sc[i] > t)).map(|i| (sc[i], i)).collect();
                // Highest score first; ties: lower index first.
                cand.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
                let mut kept: Vec<usize> = Vec::new();
                for (_, i) in cand {
                    if kept.len() >= max_out {
                        break;
                    }
                    let bi = &boxes[(b * nbox + i) * 4..(b * nbox + i + 1) * 4];
                    if kept.iter().all(|&k| !suppress(&boxes[(b * nbox + k) * 4..(b * nbox + k + 1) * 4], bi, center, iou)) {
                        kept.push(i);
                        selected.extend([b as i64, c as i64, i as i64]);
                    }
                }
            }
        }
        let n = selected.len() / 3;
        out1(Tensor::from_vec(vec![n, 3], selected)?)
    }))
}
