//! Text states on disk: every tweet's word states [n, d] for one split under one
//! checkpoint, in one file keyed by the checkpoint's and the dataset file's content, so
//! that opening the same split again encodes nothing.
//!
//! Layout: safetensors, one tensor `states` [Σ words, hidden] (tweet after tweet), the
//! format, the entry's key and each tweet's word count in the header's metadata.

use std::path::{Path, PathBuf};

use crate::model::device::Precision;
use crate::stages::key::ContentKey;
use crate::stages::tensor_file::{self, Metadata};

const FORMAT: &str = "promptmner text states v2";

/// Word states of a whole split, flat: tweet i's [words[i], hidden] block follows
/// tweet i − 1's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SplitStates {
    pub hidden: usize,
    pub words: Vec<usize>,
    pub values: Vec<f32>,
}

impl SplitStates {
    /// Tweet i's states, row-major [words[i], hidden].
    pub(crate) fn tweet(&self, i: usize) -> &[f32] {
        let start: usize = self.words[..i].iter().sum::<usize>() * self.hidden;
        &self.values[start..start + self.words[i] * self.hidden]
    }
}

/// The cache entry of one (checkpoint, split file) pair.
#[derive(Debug, Clone)]
pub(crate) struct TextStateCache {
    path: PathBuf,
    /// The content key (also in the file's metadata).
    key: String,
}

impl TextStateCache {
    /// The entry under `root` for the checkpoint's `files` (its weights, config and the
    /// text backbone's tokenizer), the split file `split` and the precision the states
    /// are computed in.
    pub(crate) fn open(
        root: &Path,
        checkpoint_files: &[&Path],
        split: &Path,
        precision: Precision,
    ) -> std::io::Result<Self> {
        let mut key = ContentKey::new(FORMAT);
        key.precision(precision);
        for file in checkpoint_files {
            let name = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            key.file(&name, file)?;
        }
        key.file("split", split)?;
        let dir = root.join("text-states");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            path: dir.join(format!("{}.safetensors", key.hex())),
            key: key.hex(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored states when they exist and have the expected shape: `hidden` wide,
    /// `words[i]` rows for tweet i. Anything else (another model's file, a truncated
    /// write, garbage) reads as absent, with a warning.
    pub(crate) fn load(&self, hidden: usize, words: &[usize]) -> Option<SplitStates> {
        if !self.path.is_file() {
            return None;
        }
        let shape = [words.iter().sum::<usize>(), hidden];
        match tensor_file::read_f32(&self.path, "states", &shape, &self.metadata(words)) {
            Ok(values) => Some(SplitStates {
                hidden,
                words: words.to_vec(),
                values,
            }),
            Err(reason) => {
                tracing::warn!(
                    "{}: {reason}; encoding the split again",
                    self.path.display()
                );
                None
            }
        }
    }

    /// Stores each tweet's states, `words[i]` rows of `hidden` values given by
    /// `tweet(i)` (atomically: readers see the old file or the whole new one). Nothing
    /// is written when `tweet` has no states of that shape for a tweet.
    pub(crate) fn store(
        &self,
        hidden: usize,
        words: &[usize],
        mut tweet: impl FnMut(usize) -> Option<Vec<f32>>,
    ) -> std::io::Result<()> {
        let rows: usize = words.iter().sum();
        let mut values = Vec::with_capacity(rows * hidden);
        for (i, &n) in words.iter().enumerate() {
            let Some(tweet) = tweet(i).filter(|v| v.len() == n * hidden) else {
                return Err(std::io::Error::other(format!(
                    "tweet {i} has no states of {n} × {hidden}"
                )));
            };
            values.extend(tweet);
        }
        tensor_file::write_f32(
            &self.path,
            "states",
            &[rows, hidden],
            &values,
            self.metadata(words),
        )
    }

    /// What an entry's header must say: the format, the key and the word counts.
    fn metadata(&self, words: &[usize]) -> Metadata {
        let words: Vec<String> = words.iter().map(usize::to_string).collect();
        Metadata::from([
            ("format".to_string(), FORMAT.to_string()),
            ("key".to_string(), self.key.clone()),
            ("words".to_string(), words.join(",")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_a_wrong_shape_or_a_cut_file_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        let split = dir.path().join("test.txt");
        std::fs::write(&weights, b"weights").unwrap();
        std::fs::write(&split, b"a\tO\n").unwrap();
        let cache = TextStateCache::open(dir.path(), &[&weights], &split, Precision::Fp32).unwrap();
        let states = SplitStates {
            hidden: 2,
            words: vec![1, 3],
            values: (0..8).map(|v| v as f32).collect(),
        };
        assert_eq!(cache.load(2, &[1, 3]), None);
        cache
            .store(2, &[1, 3], |i| Some(states.tweet(i).to_vec()))
            .unwrap();
        assert!(
            cache
                .store(2, &[1, 3], |i| (i == 0).then(|| vec![0.0; 2]))
                .is_err()
        );
        let back = cache.load(2, &[1, 3]).unwrap();
        assert_eq!(back, states);
        assert_eq!(back.tweet(1), &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(cache.load(3, &[1, 3]), None);
        assert_eq!(cache.load(2, &[1, 2]), None);
        let bytes = std::fs::read(cache.path()).unwrap();
        std::fs::write(cache.path(), &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(cache.load(2, &[1, 3]), None);
        // Another checkpoint or another split file: another entry.
        std::fs::write(&weights, b"weights2").unwrap();
        let other = TextStateCache::open(dir.path(), &[&weights], &split, Precision::Fp32).unwrap();
        assert_ne!(other.path(), cache.path());
        std::fs::write(&weights, b"weights").unwrap();
        std::fs::write(&split, b"b\tO\n").unwrap();
        let other = TextStateCache::open(dir.path(), &[&weights], &split, Precision::Fp32).unwrap();
        assert_ne!(other.path(), cache.path());
        // The same files in bf16: another entry; in fp32 again: the same one.
        std::fs::write(&split, b"a\tO\n").unwrap();
        let bf16 = TextStateCache::open(dir.path(), &[&weights], &split, Precision::Bf16).unwrap();
        assert_ne!(bf16.path(), cache.path());
        let fp32 = TextStateCache::open(dir.path(), &[&weights], &split, Precision::Fp32).unwrap();
        assert_eq!(fp32.path(), cache.path());
    }
}
