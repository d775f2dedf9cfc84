//! Pass-through ops.

use crate::registry::{BuildCtx, Kernel, Registry};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("Identity", 1, identity);
}

fn identity(_: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(|_: &crate::RunCtx<'_>, inputs: &[Option<&qaic_tensor::Value>]| {
        let v = inputs.first().copied().flatten().ok_or("missing input 0")?;
        Ok(vec![Some(v.clone())])
    }))
}
