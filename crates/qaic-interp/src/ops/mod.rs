//! Op implementations, one module per family. Adding an op = a builder function plus one
//! `r.add(...)` line in its module's `register`.

pub mod util;

use crate::registry::Registry;

mod attention;
mod basic;
mod elementwise;
mod reduce;
mod shape;
mod control;
mod conv;
mod detection;
mod grid;
mod linalg;
mod loss;
mod misc;
mod norm;
mod pool;
mod quant;
mod recent;
mod resize;
mod signal;
mod strings;
mod rnn;

/// Registers every op of this crate.
pub fn register_all(r: &mut Registry) {
    attention::register(r);
    basic::register(r);
    elementwise::register(r);
    reduce::register(r);
    shape::register(r);
    control::register(r);
    conv::register(r);
    detection::register(r);
    grid::register(r);
    linalg::register(r);
    loss::register(r);
    misc::register(r);
    norm::register(r);
    pool::register(r);
    quant::register(r);
    recent::register(r);
    resize::register(r);
    signal::register(r);
    strings::register(r);
    rnn::register(r);
}
