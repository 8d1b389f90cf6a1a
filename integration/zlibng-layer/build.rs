//! The zlib-ng release this build links, from the zlib.h libz-sys installed
//! (`DEP_Z_INCLUDE`), for `--version`.

fn main() {
    let include = std::env::var("DEP_Z_INCLUDE").expect("libz-sys gives its include dir");
    let header = std::path::Path::new(&include).join("zlib.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(&header).expect("reading libz-sys's zlib.h");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("#define ZLIBNG_VERSION "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("zlib.h is zlib-ng's (ZLIBNG_VERSION)");
    println!("cargo:rustc-env=ZLIBNG_VERSION={version}");
}
