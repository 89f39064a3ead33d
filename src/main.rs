//! Thin entry point: the command line lives in `custody::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    custody::cli::main()
}
