//! `cfs-export`: see `cfs-export --help`.

fn main() -> std::process::ExitCode {
    composefs_export::cli::main()
}
