//! Loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (f64 internally).

use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{input, ints_of, opt_input};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("NegativeLogLikelihoodLoss", 12, |c| build(c, false));
    r.add("SoftmaxCrossEntropyLoss", 12, |c| build(c, true));
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

fn build(ctx: &BuildCtx<'_>, softmax: bool) -> Result<Box<dyn Kernel>, OpError> {
    let reduction = match ctx.attr_s("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        r => return Err(OpError::Msg(format!("unknown reduction `{r}`"))),
    };
    let ignore = ctx.attr_opt_i("ignore_index")?;
    let want_log_prob = ctx.has_output(1);
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let dtype = xt.dtype();
        let x: Vec<f64> = if dtype == DType::F64 { xt.to_vec::<f64>()? } else { to_f32(xt)?.into_iter().map(|v| v as f64).collect() };
        let target = ints_of(input(inputs, 1)?)?;
        let weight = opt_input(inputs, 2)?.map(|w| to_f32(w).map(|v| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>())).transpose()?;
        if xt.rank() < 2 {
            return Err(OpError::Msg(format!("input must have rank >= 2, has shape {:?}", xt.shape())));
        }
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let d: usize = xt.shape()[2..].iter().product();
        if target.len() != n * d {
            return Err(OpError::Msg(format!("target has {} values, expected {}", target.len(), n * d)));
        }
        // log-probabilities (softmax over axis 1) or the input itself.
        let mut lp = x.clone();
        if softmax {
            for ni in 0..n {
                for di in 0..d {
                    let at = |ci: usize| (ni * c + ci) * d + di;
                    let mx = (0..c).map(|ci| x[at(ci)]).fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = (0..c).map(|ci| (x[at(ci)] - mx).exp()).sum();
                    for ci in 0..c {
                        lp[at(ci)] = ((x[at(ci)] - mx).exp() / sum).ln();
                    }
                }
            }
        }
        let mut loss = vec![0f64; n * d];
        let mut wsum = 0f64;
        for ni in 0..n {
            for di in 0..d {
                let t = target[ni * d + di];
                if Some(t) == ignore {
                    continue;
                }
                if t < 0 || t as usize >= c {
                    return Err(OpError::Msg(format!("target {t} is outside [0, {c})")));
                }
                let w = weight.as_ref().map(|w| w[t as usize]).unwrap_or(1.0);
                loss[ni * d + di] = -lp[(ni * c + t as usize) * d + di] * w;
                wsum += w;
            }
        }
        let (shape, vals): (Vec<usize>, Vec<f64>) = match reduction {
            Reduction::None => (input(inputs, 1)?.shape().to_vec(), loss),
            Reduction::Sum => (vec![], vec![loss.iter().sum()]),
            Reduction::Mean => (vec![], vec![loss.iter().sum::<f64>() / wsum]),
        };
        let to = |shape: Vec<usize>, v: Vec<f64>| -> Result<Tensor, OpError> {
            if dtype == DType::F64 {
                Ok(Tensor::from_vec(shape, v)?)
            } else {
                from_f32(dtype, shape, &v.iter().map(|&x| x as f32).collect::<Vec<_>>())
            }
        };
        let mut outs = vec![Some(Value::Tensor(to(shape, vals)?))];
        if want_log_prob {
            outs.push(Some(Value::Tensor(to(xt.shape().to_vec(), lp)?)));
        }
        Ok(outs)
    }))
}
