//! Datasets (Twitter CoNLL layout), BIO tags and spans, images, dataset statistics.

pub mod conll;
pub mod demo;
pub mod images;
pub mod spans;
pub mod stats;
pub mod tags;

use std::path::{Path, PathBuf};

pub use conll::{Tweet, read_conll};
pub use spans::Span;
pub use tags::{EntityType, Tag};

/// The splits of a dataset directory, in reading order.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// `DIR/<split>.txt`.
pub fn split_path(dir: &Path, split: &str) -> PathBuf {
    dir.join(format!("{split}.txt"))
}
