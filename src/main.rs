//! The `sealpost` binary.

fn main() -> std::process::ExitCode {
    sealpost::cli::main()
}
