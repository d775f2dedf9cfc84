//! Project chores: `cargo xtask <task>`. See `cargo xtask help`.
fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_else(|| "help".into());
    match task.as_str() {
        _ => {
            println!("cargo xtask <task>\n\ntasks: (being built; see README)");
            Ok(())
        }
    }
}
