//! The forward pass's cached stages (DESIGN §5) that training, evaluation and the
//! engine share: content keys, and the on-disk image-embedding cache.

pub mod image_cache;
pub mod key;
