//! Tells the C example test which target and host it runs on (the `cc`
//! crate needs them to find the C compiler and its flags).
fn main() {
    for name in ["TARGET", "HOST"] {
        let value = std::env::var(name).unwrap_or_default();
        println!("cargo:rustc-env=MICROBOT_FFI_{name}={value}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
