fn main() -> std::process::ExitCode {
    nkcluster::cli::main()
}
