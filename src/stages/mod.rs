//! The forward pass's cached stages (DESIGN §5) that training, evaluation and the
//! engine share: content keys, the prompt cache, the on-disk image-embedding and
//! text-state caches, and counters of the work each stage did.

pub mod image_cache;
pub(crate) mod key;
pub mod prompt_cache;
pub mod split;
pub(crate) mod tensor_file;
pub(crate) mod text_cache;

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

pub use prompt_cache::PromptCache;
pub use split::{ImageSource, PrepareError, PreparedSplit};

/// How many times each stage did real work (the caches are tested with these).
#[derive(Debug, Default)]
pub struct StageCounters {
    /// Tweets run through the text encoder.
    pub texts_encoded: AtomicUsize,
    /// Images run through CLIP's vision tower.
    pub images_encoded: AtomicUsize,
    /// Prompt strings run through CLIP's text tower.
    pub prompts_encoded: AtomicUsize,
}

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
