//! `cfs-export`: see `cfs-export --help`. The command line lives here, on
//! top of the `composefs_export` library, which prints nothing.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
