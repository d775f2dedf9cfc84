//! Chrome-trace profiles (`-aic-profiling-type=trace`).
