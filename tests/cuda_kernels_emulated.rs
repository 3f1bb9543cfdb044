//! graft's CUDA kernels (src/kernels/gpu/kernels.cu), run on the CPU: tests/cuda_emu/shim.h
//! supplies just enough of CUDA's model (threads of a block as std::threads, __syncthreads as a
//! barrier; kernels without a barrier run their threads one after another) for the host C++
//! compiler, and tests/cuda_emu/harness.cpp launches each kernel with the shapes
//! src/kernels/gpu/mod.rs uses, against double-precision references (float32 kernels) and
//! against the float32 kernels rounded once (bfloat16 instances). This checks the
//! index arithmetic and the formulas on machines without a GPU (CI); the cuDNN calls and the
//! Rust glue are checked on a GPU by `graft bench --check-kernels --device cuda`.
use std::path::Path;
use std::process::Command;

#[test]
fn cuda_kernels_match_references_when_emulated_on_the_cpu() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: no C++ compiler ({cxx}) to build the emulation harness");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("emu");
    let kernels = root.join("src/kernels/gpu/kernels.cu");
    let o = Command::new(&cxx)
        .args(["-std=c++20", "-O1", "-pthread", "-x", "c++"])
        .arg(format!("-DKERNELS=\"{}\"", kernels.display()))
        .arg(root.join("tests/cuda_emu/harness.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(o.status.success(), "building the harness failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(&exe).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "a kernel is off:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("0 failure(s)") && out.lines().filter(|l| l.starts_with("ok")).count() >= 89, "{out}");
}
