//! The `nkcluster` binary: the daemon, the quick start and the admin commands (see [`nkcluster::cli`]).
fn main() -> std::process::ExitCode {
    nkcluster::cli::main()
}
