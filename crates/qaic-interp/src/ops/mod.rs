//! Op implementations, one module per family. Adding an op = a builder function plus one
//! `r.add(...)` line in its module's `register`.

pub mod util;

use crate::registry::Registry;

mod basic;

/// Registers every op of this crate.
pub fn register_all(r: &mut Registry) {
    basic::register(r);
}
