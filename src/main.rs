//! `cfs-export`: see `cfs-export --help`.

fn main() {
    std::process::exit(composefs_export::cli::main());
}
