//! Gives the shared library the SONAME of the library it stands in for,
//! `libusb-1.0.so.0`, so that it can be installed under that name (and
//! `ldd` shows what a program will load).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libusb-1.0.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
