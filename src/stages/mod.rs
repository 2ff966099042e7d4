//! The forward pass's cached stages (DESIGN §5) that training, evaluation and the
//! engine share: content keys, and the on-disk image-embedding and text-state caches.

pub mod image_cache;
pub(crate) mod key;
pub(crate) mod text_cache;

use std::path::PathBuf;

/// Where the on-disk caches live: `$PROMPTMNER_CACHE`, else the platform cache
/// directory (`~/.cache/promptmner` on Linux).
pub fn cache_root() -> PathBuf {
    std::env::var_os("PROMPTMNER_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "promptmner")
                .map(|d| d.cache_dir().to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from(".promptmner"))
}
