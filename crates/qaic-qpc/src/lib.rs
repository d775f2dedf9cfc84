//! QPC container (being built).
