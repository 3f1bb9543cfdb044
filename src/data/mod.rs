//! Data: ImageFolder and IDX loading, splits, decoding into the backbone's input, task sampling
//! and augmentations.
pub mod augment;
pub mod decoded;
pub mod folder;
pub mod idx;
pub mod images;
pub mod npy;
pub mod shift;
pub mod task;

pub use augment::Augment;
pub use decoded::{decode_dataset, Decoded};
pub use folder::{load_dataset, Dataset, Item, ItemSource, LoadOptions, SplitInfo};
pub use images::{decode_items, ImageSet, Images, InputSpec, Normalisation, StreamedImages};
pub use shift::Shift;
