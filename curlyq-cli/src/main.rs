//! The `curlyq` command (see the crate's README).

fn main() -> std::process::ExitCode {
    curlyq_cli::main()
}
