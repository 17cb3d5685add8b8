//! The `secretgen` command: see `secretgen --help` and SPEC section 7.

mod cli;

/// jemalloc, built with its background thread on, gives memory freed after a burst (a flood
/// of connections, say) back to the OS within seconds (its decay time is 10 s); glibc's malloc
/// kept the peak for good (`benches/attacks/run.sh`).
#[cfg(all(feature = "jemalloc", target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
