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

/// Save named tensors as a safetensors file, atomically as [`write_atomic`] writes (so a crash
/// leaves a temporary that [`remove_stale_temps`] clears, and the file gets a plain file's
/// mode; writing through the safetensors crate's own temporary file left it 0600). Returns the
/// bytes written, for a caller that records their digest.
pub fn save_tensors<K, I>(path: &Path, tensors: I) -> Result<Vec<u8>>
where
    K: AsRef<str> + Ord + std::fmt::Display,
    I: IntoIterator<Item = (K, candle_core::Tensor)>,
{
    let bytes =
        safetensors::serialize(tensors, None).map_err(|e| GraftError::Other(format!("{}: cannot save tensors: {e}", path.display())))?;
    write_atomic(path, &bytes)?;
    Ok(bytes)
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

/// Check that `value` can be used as one path component (a file or folder name) without
/// leaving the folder it is joined to: non-empty, at most 128 bytes, only ASCII letters,
/// digits, `-`, `_` and `.`, not starting with `.`. `what` names the field for the message.
pub fn check_path_component(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(GraftError::Usage(format!(
            "{what} = {value:?}: must be one safe file-name component (letters, digits, '-', '_', '.'; \
             not starting with '.'; at most 128 characters), because it names files and folders"
        )))
    }
}

/// Whether a process with this id runs on this machine.
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temporary files that [`write_atomic`] and the Parquet writers leave behind when a
/// process is killed or the disk fills up: names starting with `.` and holding `.tmp-<pid>`,
/// directly in `dir`. A file is stale when its process is gone and it is older than a minute
/// (another machine writing into a shared folder renames its files within seconds), or when it
/// is older than a day. Returns how many were removed; errors are ignored (best effort).
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = stale_temp_pid(name) else { continue };
        let age = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()).unwrap_or(0);
        if ((age > 60 && !pid_alive(pid)) || age > 86_400) && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// The process id in a temporary file's name `.<name>.tmp-<pid>`, if it is one.
fn stale_temp_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let (_, pid) = name.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components() {
        for ok in ["main", "sweep-pretrain", "a.b_c-1"] {
            check_path_component("name", ok).unwrap();
        }
        for bad in ["", "..", ".", "../../x", "a/b", "a\\b", ".hidden", "x\0y", "é"] {
            assert!(check_path_component("name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn temp_names() {
        assert_eq!(stale_temp_pid(".metrics.csv.tmp-123"), Some(123));
        assert_eq!(stale_temp_pid(".part-x.parquet.tmp-77"), Some(77));
        assert_eq!(stale_temp_pid("metrics.csv"), None);
        assert_eq!(stale_temp_pid(".x.tmp-abc"), None);
    }
}

/// Serde helpers for numbers that may be NaN: JSON has no NaN, so serde_json writes NaN and
/// infinities as `null`; these read `null` back as NaN, so every record graft writes (a
/// diverged run included) can be read again.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer};

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

/// The median of `v` (the mean of the two middle values for an even count); NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
