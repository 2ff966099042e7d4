//! Content keys for the on-disk caches: BLAKE3 over the bytes that determine an entry
//! (model files, dataset files, image files), so that a key means the same on every
//! machine and Rust release, and any change to an input gives a new key.

use std::io::Read;
use std::path::Path;

use crate::model::device::Precision;

/// Builds a key from named parts; the names keep ("a", "bc") and ("ab", "c") apart.
pub(crate) struct ContentKey {
    hasher: blake3::Hasher,
}

impl ContentKey {
    /// A key for one kind of entry (`kind` versions the format too).
    pub(crate) fn new(kind: &str) -> Self {
        let mut key = Self {
            hasher: blake3::Hasher::new(),
        };
        key.bytes("kind", kind.as_bytes());
        key
    }

    /// Adds a part given in memory.
    pub(crate) fn bytes(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        for part in [name.as_bytes(), bytes] {
            self.hasher.update(&(part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self
    }

    /// Adds the precision the entry was computed in. fp32 adds nothing, so that keys
    /// made before bf16 existed still find their entries.
    pub(crate) fn precision(&mut self, precision: Precision) -> &mut Self {
        match precision {
            Precision::Fp32 => self,
            Precision::Bf16 => self.bytes("precision", b"bf16"),
        }
    }

    /// Adds a file's content.
    pub(crate) fn file(&mut self, name: &str, path: &Path) -> std::io::Result<&mut Self> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        self.hasher.update(&(name.len() as u64).to_le_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update(&len.to_le_bytes());
        let mut buffer = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.hasher.update(&buffer[..n]);
        }
        if read != len {
            return Err(std::io::Error::other(format!(
                "{} changed while it was read",
                path.display()
            )));
        }
        Ok(self)
    }

    /// The key as 32 hex digits (128 bits: collisions are out of reach for a cache).
    pub(crate) fn hex(&self) -> String {
        self.hasher.finalize().to_hex()[..32].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_see_every_part_and_boundary() {
        let key = |parts: &[(&str, &[u8])]| {
            let mut k = ContentKey::new("test-v1");
            for (name, bytes) in parts {
                k.bytes(name, bytes);
            }
            k.hex()
        };
        // Pinned (and recomputed with the Python blake3 package): the same bytes give
        // this key on any machine and release.
        assert_eq!(key(&[("a", b"bc")]), "d63ed7242d5281494a2ffa69c2b036ad");
        assert_eq!(key(&[("a", b"bc")]).len(), 32);
        assert_ne!(key(&[("a", b"bc")]), key(&[("ab", b"c")]));
        assert_ne!(key(&[("a", b"bc")]), key(&[("a", b"bd")]));
        assert_ne!(ContentKey::new("x").hex(), ContentKey::new("y").hex());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"bc").unwrap();
        let mut from_file = ContentKey::new("test-v1");
        from_file.file("a", &path).unwrap();
        std::fs::write(&path, b"bd").unwrap();
        let mut changed = ContentKey::new("test-v1");
        changed.file("a", &path).unwrap();
        assert_ne!(from_file.hex(), changed.hex());
    }
}
