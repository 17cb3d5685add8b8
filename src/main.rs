//! The `secretgen` command: see `secretgen --help` and SPEC section 7.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
