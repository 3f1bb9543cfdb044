//! With the `cudnn` feature, compiles graft's CUDA kernels (src/kernels/gpu/kernels.cu) to PTX
//! with nvcc (scripts/build-cuda.sh puts one on PATH). The default CPU build does nothing here.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/kernels/gpu/kernels.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDNN").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("graft_kernels.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    // --fmad=false: no multiply-add contraction, so the kernels round as graft's CPU kernels do
    let status = Command::new(&nvcc)
        .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", "--fmad=false", "-o"])
        .arg(&out)
        .arg("src/kernels/gpu/kernels.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{nvcc} failed ({s}) compiling src/kernels/gpu/kernels.cu"),
        Err(e) => panic!("could not run {nvcc} for the `cudnn` feature ({e}); scripts/build-cuda.sh provides one"),
    }
}
