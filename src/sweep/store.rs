//! Crash-safe storage of a sweep's rows. Each finished run is first written as its own Parquet
//! file in `OUT/_staging/<shard>/` (atomic rename; pyarrow, polars and graft skip `_` folders),
//! then staged files are compacted into `OUT/source=sweep-<plan>/part-<shard>-<seq>.parquet`
//! (atomic) and only then deleted. A staged file whose run is already in a compacted part (a
//! crash between the two steps) is deleted on the next start, so no row is ever read twice
//! and a SIGKILL loses at most the run in flight.
use crate::error::{GraftError, Result};
use crate::metadataset::{self, MetaRow};
use polars::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub struct Store {
    pub staging: PathBuf,
    pub part_dir: PathBuf,
    pub shard_tag: String,
    /// Run ids in compacted part files: read once when the store opens, then kept up to date
    /// by [`Store::compact`] (only this shard writes this shard's staged runs).
    compacted: HashSet<String>,
    /// The shard's lock (`OUT/_staging/<plan>-<shard>.lock`, `flock`ed): held while the store
    /// lives, so a second process on the same shard is refused instead of writing duplicates.
    _lock: Option<std::fs::File>,
}

/// Take an exclusive, non-blocking `flock` on `path` (created if missing). The lock is released
/// when the file is closed, also when the process is killed.
fn lock_shard(path: &Path, what: &str) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| GraftError::io(path, e))?;
    // SAFETY: flock on a file descriptor this function owns; no memory is touched.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(GraftError::Usage(format!(
                "another graft sweep is already writing {what} (lock {} is held); wait for it to finish, or run another --shard",
                path.display()
            )));
        }
        return Err(GraftError::io(path, e));
    }
    Ok(f)
}

fn read_rows_ids(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).map_err(|e| GraftError::io(path, e))?;
    let df = ParquetReader::new(f)
        .with_columns(Some(vec!["run_id".into()]))
        .finish()
        .map_err(|e| GraftError::Data(format!("{}: unreadable Parquet: {e}", path.display())))?;
    frame_ids(&df, path)
}

fn frame_ids(df: &DataFrame, path: &Path) -> Result<Vec<String>> {
    let c = df.column("run_id").map_err(|e| GraftError::Data(format!("{}: {e}", path.display())))?;
    let s = c.str().map_err(|e| GraftError::Data(format!("{}: run_id: {e}", path.display())))?;
    Ok(s.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

fn parquet_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                    n.ends_with(".parquet") && !n.starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Store {
    /// Open the store of one shard. `write`: take the shard's lock and prepare its folders, as
    /// every writer must; a dry run that only counts opens it read-only and creates nothing.
    pub fn new(out: &Path, plan: &str, shard: usize, n_shards: usize, write: bool) -> Result<Store> {
        crate::util::check_path_component("plan name", plan)?;
        let shard_tag = format!("s{shard}of{n_shards}");
        let staging = out.join("_staging").join(format!("{plan}-{shard_tag}"));
        let part_dir = out.join(format!("source=sweep-{plan}"));
        let mut lock = None;
        if write {
            std::fs::create_dir_all(&staging).map_err(|e| GraftError::io(&staging, e))?;
            let p = out.join("_staging").join(format!("{plan}-{shard_tag}.lock"));
            lock = Some(lock_shard(&p, &format!("plan `{plan}` shard {shard}/{n_shards} in {}", out.display()))?);
            std::fs::create_dir_all(&part_dir).map_err(|e| GraftError::io(&part_dir, e))?;
            // temporary files of this shard left by a killed process (never renamed, never read)
            for (dir, prefix) in [(&staging, ".part-".to_string()), (&part_dir, format!(".part-{shard_tag}-"))] {
                for e in std::fs::read_dir(dir).map_err(|e| GraftError::io(dir, e))?.flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.starts_with(&prefix) && n.contains(".tmp-") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        let mut compacted = HashSet::new();
        for f in metadataset::part_files(out) {
            compacted.extend(read_rows_ids(&f)?);
        }
        Ok(Store { staging, part_dir, shard_tag, compacted, _lock: lock })
    }

    /// Run ids already recorded anywhere under OUT (compacted parts of every shard and source,
    /// and this shard's staging area).
    pub fn done(&self) -> Result<HashSet<String>> {
        let mut s = self.compacted.clone();
        for f in parquet_in(&self.staging) {
            s.extend(read_rows_ids(&f)?);
        }
        Ok(s)
    }

    /// Write one finished run to staging (atomically).
    pub fn stage(&self, row: &MetaRow) -> Result<()> {
        metadataset::write_part(&self.staging, &row.run_id, std::slice::from_ref(row))?;
        Ok(())
    }

    /// Move every staged run into one new compacted part file, then delete the staged files.
    /// Staged runs already present in a compacted part are dropped, not duplicated.
    pub fn compact(&mut self) -> Result<usize> {
        let staged = parquet_in(&self.staging);
        if staged.is_empty() {
            return Ok(0);
        }
        let mut frames: Option<DataFrame> = None;
        let mut new_ids: HashSet<String> = HashSet::new();
        let mut n = 0;
        for f in &staged {
            let file = std::fs::File::open(f).map_err(|e| GraftError::io(f, e))?;
            let df =
                ParquetReader::new(file).finish().map_err(|e| GraftError::Data(format!("{}: unreadable Parquet: {e}", f.display())))?;
            let ids = frame_ids(&df, f)?;
            // a run id already compacted, or met earlier in this batch, is dropped: one row per run
            let keep: Vec<bool> = ids.iter().map(|i| !self.compacted.contains(i) && new_ids.insert(i.clone())).collect();
            if !keep.iter().any(|&k| k) {
                continue;
            }
            let df = if keep.iter().all(|&k| k) {
                df
            } else {
                let mask = BooleanChunked::from_slice("keep".into(), &keep);
                df.filter(&mask).map_err(|e| GraftError::Data(format!("{}: {e}", f.display())))?
            };
            n += df.height();
            frames = Some(match frames {
                None => df,
                Some(mut acc) => {
                    acc.vstack_mut(&df).map_err(|e| GraftError::Data(format!("{}: schema differs: {e}", f.display())))?;
                    acc
                }
            });
        }
        if let Some(mut df) = frames {
            let seq = (0..)
                .find(|i| !self.part_dir.join(format!("part-{}-{i:05}.parquet", self.shard_tag)).exists())
                .expect("a free sequence number");
            let id = format!("{}-{seq:05}", self.shard_tag);
            let tmp = self.part_dir.join(format!(".part-{id}.parquet.tmp-{}", std::process::id()));
            df.rechunk_mut();
            metadataset::write_parquet_file(&mut df, &tmp)?;
            let dst = self.part_dir.join(format!("part-{id}.parquet"));
            std::fs::rename(&tmp, &dst).map_err(|e| GraftError::io(&dst, e))?;
            self.compacted.extend(new_ids);
        }
        for f in &staged {
            std::fs::remove_file(f).map_err(|e| GraftError::io(f, e))?;
        }
        Ok(n)
    }
}
