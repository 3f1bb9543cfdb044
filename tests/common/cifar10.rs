//! CIFAR-10 from `data/cifar10` (ImageFolder train/ and test/, unpacked from the shared tarball
//! by `scripts/fetch-data.sh cifar10`; `GRAFT_DATA` moves `data/`).
use graft::data::{Item, ItemSource};
use std::path::PathBuf;

pub fn root() -> PathBuf {
    let data = std::env::var("GRAFT_DATA").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"));
    let r = data.join("cifar10");
    assert!(
        r.join("train").is_dir() && r.join("test").is_dir(),
        "{}: CIFAR-10 is not unpacked there; run `scripts/fetch-data.sh cifar10` first",
        r.display()
    );
    r
}

/// The images `per_class` (by sorted file name) of every class of `split` ("train" or
/// "test"), classes in sorted order; labelled with the class index or unlabelled.
pub fn items(split: &str, per_class: std::ops::Range<usize>, labelled: bool) -> Vec<Item> {
    let dir = root().join(split);
    let mut classes: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let mut v = Vec::new();
    for (ci, c) in classes.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(c)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(files.len() >= per_class.end, "{}: {} images, need {}", dir.join(c).display(), files.len(), per_class.end);
        for f in &files[per_class.clone()] {
            v.push(Item { source: ItemSource::File(f.clone()), label: labelled.then_some(ci) });
        }
    }
    v
}
