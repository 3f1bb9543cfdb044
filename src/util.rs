//! Small shared helpers: seeded RNG streams, hashing, atomic file writes.
use crate::error::{GraftError, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// A portable seeded RNG for one named purpose: every random choice flows from the run seed,
/// and separate purposes get independent streams so adding one does not shift the others.
pub fn rng_for(seed: u64, purpose: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    let d = h.finalize();
    let mut s = [0u8; 32];
    s.copy_from_slice(&d);
    ChaCha8Rng::from_seed(s)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    Ok(sha256_hex(&bytes))
}

/// Write a file atomically: write to a hidden temporary file in the same folder, fsync, rename.
/// A crash leaves either the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{}.tmp-{}", name, std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| GraftError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| GraftError::io(&tmp, e))?;
        f.sync_all().map_err(|e| GraftError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| GraftError::io(path, e))?;
    Ok(())
}

pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| GraftError::io(path, e))
}

/// Seconds since the Unix epoch as an RFC 3339 UTC string.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Keep large freed buffers in the heap instead of returning them to the OS: training
/// allocates and frees the same activation-sized buffers every step, and glibc's default
/// mmap/trim thresholds turn that into page faults that cost about a fifth of the step time.
pub fn tune_allocator() {
    if std::env::var("GRAFT_REFERENCE_KERNELS").map(|v| v == "1").unwrap_or(false) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
