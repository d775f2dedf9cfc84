//! Host pre/post-processing: the transform sequences of `networkdesc.bin` (`-host-preproc`, the
//! default). An I/O whose user-facing tensor differs from the network's (custom I/O: another
//! precision or the NHWC layout) carries `ConvertTransform` / `TransposeTransform` steps around
//! its `CopyDMABufferTransform`; the runtime runs them on the host — inputs before the copy into
//! the DMA buffer, outputs after the copy out of it. With `-aic-preproc` the compiler moves the
//! layout change into the device program instead and the sequence is a plain copy.

use qaic_qpc::networkdesc::{DataType, IoBinding, IoDescriptor, NetworkDescLayout, Transform, TransformKind};
use qaic_tensor::DType;


/// How the user's tensor of an I/O differs from the network's (custom I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIo {
    /// Element type the user passes or receives (`float` or `float16`).
    pub dtype: DType,
    /// The user's tensor is NHWC (the network's is NCHW); rank 4 only.
    pub nhwc: bool,
}

/// One host step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStep {
    /// Element type conversion (float32 ↔ float16).
    Convert { from: DType, to: DType },
    /// Transpose of a row-major tensor of `dims` (before the step) with `perm`.
    Transpose { dims: Vec<usize>, perm: Vec<usize>, elem: usize },
}

/// Permutation NHWC → NCHW (input side) and back (output side).
pub const NHWC_TO_NCHW: [usize; 4] = [0, 3, 1, 2];
pub const NCHW_TO_NHWC: [usize; 4] = [0, 2, 3, 1];

fn permute(dims: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter().map(|&p| dims[p]).collect()
}

fn desc(ty: DataType, dims: &[usize]) -> IoDescriptor {
    IoDescriptor { r#type: ty as i32, qscale: 1.0, qoffset: 0, dims: dims.iter().map(|&d| d as i32).collect(), layout: NetworkDescLayout::FlatNXYD as i32 }
}

fn step(kind: TransformKind, ty: DataType, dims: &[usize], shuffle: &[usize]) -> Transform {
    Transform {
        kind: kind as i32,
        r#type: ty as i32,
        scale: 1.0,
        dims: dims.iter().map(|&d| d as i32).collect(),
        layout: NetworkDescLayout::FlatNXYD as i32,
        shuffle: shuffle.iter().map(|&p| p as i32).collect(),
        ..Default::default()
    }
}

/// The user descriptor and the host steps (before the copy for inputs, after it for outputs)
/// of an I/O of network type (`net_ty`, `net_dims`) whose user tensor is `user`.
pub(crate) fn user_steps(is_input: bool, net_ty: DataType, net_dims: &[usize], user: &UserIo) -> Result<(IoDescriptor, Vec<Transform>), String> {
    let user_ty = crate::assemble::data_type(user.dtype).ok_or_else(|| format!("custom I/O precision {} has no networkdesc data type", user.dtype.name()))?;
    if user.nhwc && net_dims.len() != 4 {
        return Err(format!("layout NHWC needs a rank-4 tensor, this one has dims {net_dims:?}"));
    }
    let user_dims = if user.nhwc { permute(net_dims, &NCHW_TO_NHWC) } else { net_dims.to_vec() };
    let mut steps = Vec::new();
    if is_input {
        if user_ty != net_ty {
            steps.push(step(TransformKind::ConvertTransform, net_ty, &user_dims, &[]));
        }
        if user.nhwc {
            steps.push(step(TransformKind::TransposeTransform, net_ty, net_dims, &NHWC_TO_NCHW));
        }
    } else {
        if user.nhwc {
            steps.push(step(TransformKind::TransposeTransform, net_ty, &user_dims, &NCHW_TO_NHWC));
        }
        if user_ty != net_ty {
            steps.push(step(TransformKind::ConvertTransform, user_ty, &user_dims, &[]));
        }
    }
    Ok((desc(user_ty, &user_dims), steps))
}

/// Host steps of a binding: the steps before the copy (inputs) or after it (outputs), checked
/// to lead from the user tensor to the DMA buffer's tensor. Returns (user dtype, user dims,
/// steps). Kinds other than Convert (float32/float16) and Transpose are refused by name.
pub(crate) fn parse_steps(b: &IoBinding, is_input: bool) -> Result<(DType, Vec<usize>, Vec<HostStep>), String> {
    let copy = b.transformseq.iter().position(|t| t.kind == TransformKind::CopyDMABufferTransform as i32).ok_or("no CopyDMABuffer step")?;
    let (start, range) = if is_input {
        (b.io_initial.as_ref().ok_or("no io_initial")?, 0..copy)
    } else {
        (b.io_initial.as_ref().ok_or("no io_initial")?, copy + 1..b.transformseq.len())
    };
    let ty = |t: i32| DataType::try_from(t).map(crate::assemble::dtype_of).map_err(|_| format!("unknown data type {t}"));
    let mut cur_ty = ty(start.r#type)?;
    let mut cur_dims: Vec<usize> = start.dims.iter().map(|&d| d.max(0) as usize).collect();
    // Outputs: the walk starts at the network tensor (io_initial) after the copy.
    let (user_ty, user_dims) = if is_input { (cur_ty, cur_dims.clone()) } else { (DType::F32, Vec::new()) };
    let mut steps = Vec::new();
    for (j, t) in b.transformseq[range].iter().enumerate() {
        match TransformKind::try_from(t.kind) {
            Ok(TransformKind::ConvertTransform) => {
                let to = ty(t.r#type)?;
                let ok = |d: DType| matches!(d, DType::F32 | DType::F16);
                if !(ok(cur_ty) && ok(to)) {
                    return Err(format!("transform {j}: conversion {} -> {} is not supported by the host runtime", cur_ty.name(), to.name()));
                }
                if cur_ty != to {
                    steps.push(HostStep::Convert { from: cur_ty, to });
                }
                cur_ty = to;
            }
            Ok(TransformKind::TransposeTransform) => {
                let perm: Vec<usize> = t.shuffle.iter().map(|&p| p.max(0) as usize).collect();
                let mut seen = vec![false; cur_dims.len()];
                if perm.len() != cur_dims.len() || perm.iter().any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true)) {
                    return Err(format!("transform {j}: shuffle {:?} is not a permutation of {} dims", t.shuffle, cur_dims.len()));
                }
                steps.push(HostStep::Transpose { dims: cur_dims.clone(), perm: perm.clone(), elem: cur_ty.storage_bytes(1) });
                cur_dims = permute(&cur_dims, &perm);
            }
            Ok(k) => return Err(format!("transform {j}: {k:?} is not supported by the host runtime")),
            Err(_) => return Err(format!("transform {j}: unknown kind {}", t.kind)),
        }
    }
    if is_input {
        let c = &b.transformseq[copy];
        let want: Vec<usize> = c.dims.iter().map(|&d| d.max(0) as usize).collect();
        if ty(c.r#type)? != cur_ty || (!want.is_empty() && want != cur_dims) {
            return Err(format!("the transforms give {} {cur_dims:?}, the copy moves {} {want:?}", cur_ty.name(), ty(c.r#type)?.name()));
        }
        Ok((user_ty, user_dims, steps))
    } else {
        let end = b.io_transformed.as_ref().ok_or("no io_transformed")?;
        let want: Vec<usize> = end.dims.iter().map(|&d| d.max(0) as usize).collect();
        if ty(end.r#type)? != cur_ty || want != cur_dims {
            return Err(format!("the transforms give {} {cur_dims:?}, io_transformed is {} {want:?}", cur_ty.name(), ty(end.r#type)?.name()));
        }
        Ok((cur_ty, cur_dims, steps))
    }
}

/// Runs the host steps on `data`.
pub(crate) fn apply(steps: &[HostStep], data: &[u8]) -> Vec<u8> {
    let mut cur = data.to_vec();
    for s in steps {
        cur = match s {
            HostStep::Convert { from: DType::F16, to: DType::F32 } => cur
                .chunks_exact(2)
                .flat_map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
                .collect(),
            HostStep::Convert { from: DType::F32, to: DType::F16 } => cur
                .chunks_exact(4)
                .flat_map(|c| half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
                .collect(),
            HostStep::Convert { .. } => cur,
            HostStep::Transpose { dims, perm, elem } => transpose(&cur, dims, perm, *elem),
        };
    }
    cur
}

/// Row-major transpose of `data` (dims `dims`, `elem` bytes per element) by `perm`.
fn transpose(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Vec<u8> {
    let n: usize = dims.iter().product();
    if data.len() != n * elem {
        return data.to_vec();
    }
    let out_dims = permute(dims, perm);
    let mut in_strides = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; out_dims.len()];
    for _ in 0..n {
        let src: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[src * elem..(src + 1) * elem]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < out_dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhwc_float16_round_trip() {
        let net = [1usize, 2, 2, 3];
        let user = UserIo { dtype: DType::F16, nhwc: true };
        let (d_in, s_in) = user_steps(true, DataType::FloatTy, &net, &user).unwrap();
        assert_eq!(d_in.dims, [1, 2, 3, 2]);
        let copy_in = step(TransformKind::CopyDMABufferTransform, DataType::FloatTy, &net, &[]);
        let b_in = IoBinding { io_initial: Some(d_in), transformseq: [s_in, vec![copy_in]].concat(), ..Default::default() };
        let (ty, dims, steps) = parse_steps(&b_in, true).unwrap();
        assert_eq!((ty, dims.as_slice()), (DType::F16, &[1usize, 2, 3, 2][..]));
        // NHWC f16 user data: value = 100*h + 10*w + c.
        let mut user_bytes = Vec::new();
        for h in 0..2 {
            for w in 0..3 {
                for c in 0..2 {
                    user_bytes.extend(half::f16::from_f32((100 * h + 10 * w + c) as f32).to_le_bytes());
                }
            }
        }
        let dev = apply(&steps, &user_bytes);
        let v: Vec<f32> = dev.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(&v[..6], &[0.0, 10.0, 20.0, 100.0, 110.0, 120.0]); // channel 0, NCHW order
        let (d_out, s_out) = user_steps(false, DataType::FloatTy, &net, &user).unwrap();
        let copy_out = step(TransformKind::CopyDMABufferTransform, DataType::FloatTy, &net, &[]);
        let b_out = IoBinding { io_initial: Some(desc(DataType::FloatTy, &net)), io_transformed: Some(d_out), transformseq: [vec![copy_out], s_out].concat(), ..Default::default() };
        let (_, _, back) = parse_steps(&b_out, false).unwrap();
        assert_eq!(apply(&back, &dev), user_bytes);
        assert!(user_steps(true, DataType::FloatTy, &[2, 3], &user).unwrap_err().contains("rank-4"));
    }
}
