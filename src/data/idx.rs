//! MNIST-style IDX files: `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//! `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]` in one folder.
use super::folder::{stratified_split, Dataset, Item, ItemSource, LoadOptions, SplitInfo};
use crate::error::{GraftError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    for suffix in ["", ".gz"] {
        let p = dir.join(format!("{stem}{suffix}"));
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| GraftError::Data(format!("{}: corrupt gzip stream: {e}", path.display())))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parse an IDX file of unsigned bytes; returns (dims, data).
pub fn parse_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let b = read_maybe_gz(path)?;
    let bad = |m: &str| GraftError::Data(format!("{}: not a valid IDX file: {m}", path.display()));
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(bad("missing the 0x0000 magic prefix"));
    }
    if b[2] != 0x08 {
        return Err(bad(&format!("element type 0x{:02x} unsupported (only unsigned byte, 0x08)", b[2])));
    }
    let nd = b[3] as usize;
    if b.len() < 4 + 4 * nd {
        return Err(bad("truncated header"));
    }
    let dims: Vec<usize> = (0..nd).map(|i| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as usize).collect();
    let n: usize = dims.iter().product();
    let start = 4 + 4 * nd;
    if b.len() != start + n {
        return Err(bad(&format!("header says {n} bytes of data, file has {}", b.len() - start)));
    }
    Ok((dims, b[start..].to_vec()))
}

fn load_pair(img: &Path, lab: &Path) -> Result<(Vec<Item>, usize)> {
    let (dims, data) = parse_idx(img)?;
    if dims.len() != 3 {
        return Err(GraftError::Data(format!("{}: expected 3 dimensions (n, rows, cols), found {:?}", img.display(), dims)));
    }
    let (ldims, labels) = parse_idx(lab)?;
    if ldims.len() != 1 || ldims[0] != dims[0] {
        return Err(GraftError::Data(format!(
            "{}: expected {} labels to match {}, found shape {:?}",
            lab.display(),
            dims[0],
            img.display(),
            ldims
        )));
    }
    let (h, w) = (dims[1], dims[2]);
    let per = h * w;
    let max_label = labels.iter().copied().max().unwrap_or(0) as usize;
    let items = (0..dims[0])
        .map(|i| Item {
            source: ItemSource::Pixels {
                data: Arc::from(&data[i * per..(i + 1) * per]),
                width: w as u32,
                height: h as u32,
                channels: 1,
                name: format!("{}#{i}", img.display()),
            },
            label: Some(labels[i] as usize),
        })
        .collect();
    Ok((items, max_label + 1))
}

/// If `dir` holds IDX files, load them (train and, when present, t10k as the test split).
pub fn try_load_idx(dir: &Path, opts: &LoadOptions) -> Result<Option<Dataset>> {
    let (Some(ti), Some(tl)) = (find(dir, "train-images-idx3-ubyte"), find(dir, "train-labels-idx1-ubyte")) else {
        return Ok(None);
    };
    let (mut train, mut nc) = load_pair(&ti, &tl)?;
    let (test, split) = match (find(dir, "t10k-images-idx3-ubyte"), find(dir, "t10k-labels-idx1-ubyte")) {
        (Some(si), Some(sl)) => {
            let (t, n2) = load_pair(&si, &sl)?;
            nc = nc.max(n2);
            (t, SplitInfo { method: "idx".into(), test_fraction: None, seed: opts.seed })
        }
        _ => {
            let (keep, held) = stratified_split(std::mem::take(&mut train), nc, opts.test_fraction, opts.seed, "holdout-test");
            train = keep;
            (held, SplitInfo { method: "holdout".into(), test_fraction: Some(opts.test_fraction), seed: opts.seed })
        }
    };
    if nc < 2 {
        return Err(GraftError::Data(format!("{}: IDX labels name fewer than two classes", tl.display())));
    }
    let classes = (0..nc).map(|c| c.to_string()).collect();
    Ok(Some(Dataset { root: dir.to_path_buf(), classes, train, val: Vec::new(), test, unlabelled: Vec::new(), split }))
}
