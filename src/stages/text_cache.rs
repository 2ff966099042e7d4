//! Text states on disk: every tweet's word states [n, d] for one split under one
//! checkpoint, in one file keyed by the checkpoint's and the dataset file's content, so
//! that opening the same split again encodes nothing.
//!
//! Layout: the magic line, a little-endian u64 header length, a JSON header (hidden
//! width and each tweet's word count), then the f32 values, little-endian.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stages::key::ContentKey;

const MAGIC: &[u8] = b"promptmner text states v1\n";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    hidden: usize,
    words: Vec<usize>,
}

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
}

impl TextStateCache {
    /// The entry under `root` for the checkpoint's `files` (its weights, config and the
    /// text backbone's tokenizer) and the split file `split`.
    pub(crate) fn open(
        root: &Path,
        checkpoint_files: &[&Path],
        split: &Path,
    ) -> std::io::Result<Self> {
        let mut key = ContentKey::new("text-states-v1");
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
            path: dir.join(format!("{}.bin", key.hex())),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored states when they exist and have the expected shape: `hidden` wide,
    /// `words[i]` rows for tweet i. Anything else (another model's file, a truncated
    /// write, garbage) reads as absent, with a warning.
    pub(crate) fn load(&self, hidden: usize, words: &[usize]) -> Option<SplitStates> {
        let mut file = std::fs::File::open(&self.path).ok()?;
        match read_states(&mut file, hidden, words) {
            Ok(states) => Some(states),
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
        let header = serde_json::to_vec(&Header {
            hidden,
            words: words.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        let count: usize = words.iter().sum::<usize>() * hidden;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + header.len() + count * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for (i, &n) in words.iter().enumerate() {
            let Some(values) = tweet(i).filter(|v| v.len() == n * hidden) else {
                return Err(std::io::Error::other(format!(
                    "tweet {i} has no states of {n} × {hidden}"
                )));
            };
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        crate::util::write_atomic(&self.path, &bytes)
    }
}

fn read_states(
    file: &mut std::fs::File,
    hidden: usize,
    words: &[usize],
) -> Result<SplitStates, String> {
    let mut magic = vec![0u8; MAGIC.len()];
    file.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if magic != MAGIC {
        return Err("not a text-state file".into());
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u64::from_le_bytes(len);
    if len > 1 << 30 {
        return Err(format!("header of {len} bytes"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
    let expected = Header {
        hidden,
        words: words.to_vec(),
    };
    if header != expected {
        return Err(format!(
            "{} tweets {} wide, expected {} tweets {hidden} wide",
            header.words.len(),
            header.hidden,
            words.len()
        ));
    }
    let count = words.iter().sum::<usize>() * hidden;
    let mut bytes = Vec::with_capacity(count * 4);
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() != count * 4 {
        return Err(format!(
            "{} bytes of states, expected {}",
            bytes.len(),
            count * 4
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {bad} is not finite"));
    }
    Ok(SplitStates {
        hidden,
        words: words.to_vec(),
        values,
    })
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
        let cache = TextStateCache::open(dir.path(), &[&weights], &split).unwrap();
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
        let other = TextStateCache::open(dir.path(), &[&weights], &split).unwrap();
        assert_ne!(other.path(), cache.path());
        std::fs::write(&weights, b"weights").unwrap();
        std::fs::write(&split, b"b\tO\n").unwrap();
        let other = TextStateCache::open(dir.path(), &[&weights], &split).unwrap();
        assert_ne!(other.path(), cache.path());
    }
}
