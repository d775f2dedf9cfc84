//! `qaic-compile`: the vendor's new name for `qaic-exec`; the same program (a separate file
//! only so that Cargo does not warn about one file in two targets).

#[path = "main.rs"]
mod exec;

fn main() -> std::process::ExitCode {
    exec::main()
}
