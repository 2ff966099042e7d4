//! Image embeddings cached on disk, keyed by CLIP model and image content, so a second
//! run (or the workbench) does not encode images again.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::data::Tweet;
use crate::data::images::{ImageResolver, decode_image};
use crate::model::device::Precision;
use crate::model::{ImageState, ModelError, PromptMner};
use crate::progress::{Progress, Task};
use crate::stages::StageCounters;
use crate::stages::key::ContentKey;
use crate::stages::tensor_file::{self, Metadata};

/// A folder of `<image content key>.f32` files for one CLIP model.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
}

/// The entry format; a new version gives new keys instead of misreading old entries.
const FORMAT: &str = "promptmner image embedding v2";

/// One image's entry: its file and the metadata it is written with.
struct Entry {
    path: PathBuf,
    metadata: Metadata,
}

impl ImageCache {
    /// [`crate::stages::cache_root`]`/image-embeddings`.
    pub fn default_root() -> PathBuf {
        crate::stages::cache_root().join("image-embeddings")
    }

    /// The cache of the CLIP model in `clip_dir` (keyed by its config and weights, and
    /// the precision the embeddings are computed in).
    pub fn open(root: &Path, clip_dir: &Path, precision: Precision) -> std::io::Result<Self> {
        let mut key = ContentKey::new(FORMAT);
        key.precision(precision);
        key.file("config.json", &clip_dir.join("config.json"))?
            .file("model.safetensors", &clip_dir.join("model.safetensors"))?;
        let dir = root.join(key.hex());
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn entry(&self, image: &Path) -> std::io::Result<Entry> {
        let mut key = ContentKey::new(FORMAT);
        key.file("image", image)?;
        let key = key.hex();
        Ok(Entry {
            path: self.dir.join(format!("{key}.safetensors")),
            metadata: Metadata::from([
                ("format".to_string(), FORMAT.to_string()),
                ("key".to_string(), key),
            ]),
        })
    }

    /// A stored embedding of `dim` values; an entry of another key or size, or with
    /// values that are not finite (a truncated or foreign file), is treated as absent.
    fn get(&self, entry: &Entry, dim: usize) -> Option<Vec<f32>> {
        if !entry.path.is_file() {
            return None;
        }
        tensor_file::read_f32(&entry.path, "embedding", &[dim], &entry.metadata)
            .map_err(|reason| {
                tracing::warn!(
                    "{}: {reason}; encoding the image again",
                    entry.path.display()
                )
            })
            .ok()
    }

    fn put(&self, entry: &Entry, values: &[f32]) -> std::io::Result<()> {
        tensor_file::write_f32(
            &entry.path,
            "embedding",
            &[values.len()],
            values,
            entry.metadata.clone(),
        )
    }
}

/// Image states of tweets: from the disk cache where present, else decoded and encoded
/// in batches of `batch_size` (and stored). Tweets without a usable image get the reason.
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
pub fn image_states(
    model: &PromptMner,
    tweets: &[Tweet],
    resolver: &ImageResolver,
    cache: Option<&ImageCache>,
    batch_size: usize,
    progress: &dyn Progress,
    counters: &StageCounters,
) -> Result<Vec<ImageState>, ModelError> {
    let dim = model.clip().config.projection_dim;
    let mut states: Vec<Option<ImageState>> = vec![None; tweets.len()];
    // (tweet index, cache entry, decoded pixels) still to encode.
    let mut pending: Vec<(usize, Option<Entry>, Tensor)> = Vec::new();
    let mut task = Task::start(progress, "encoding images", tweets.len() as u64);
    let flush = |pending: &mut Vec<(usize, Option<Entry>, Tensor)>,
                 states: &mut Vec<Option<ImageState>>|
     -> Result<(), ModelError> {
        if pending.is_empty() {
            return Ok(());
        }
        let pixels: Vec<Tensor> = pending.iter().map(|(_, _, p)| p.clone()).collect();
        counters
            .images_encoded
            .fetch_add(pixels.len(), std::sync::atomic::Ordering::Relaxed);
        let encoded = model.encode_pixels(&Tensor::stack(&pixels, 0)?)?;
        for ((i, entry, _), state) in pending.drain(..).zip(encoded) {
            if let (Some(cache), Some(entry), Some(embedding)) = (cache, entry, state.embedding())
                && let Err(e) = cache.put(&entry, &embedding.to_vec1::<f32>()?)
            {
                tracing::warn!("cannot write the image cache {}: {e}", entry.path.display());
            }
            states[i] = Some(state);
        }
        Ok(())
    };
    for (i, tweet) in tweets.iter().enumerate() {
        task.advance(1);
        let Some(id) = tweet.image_id.as_deref() else {
            states[i] = Some(ImageState::none(crate::data::images::NoImage::NoImageId));
            continue;
        };
        let path = match resolver.resolve(id) {
            Ok(path) => path,
            Err(reason) => {
                states[i] = Some(ImageState::none(reason));
                continue;
            }
        };
        let entry = cache.and_then(|c| c.entry(&path).ok());
        if let Some(values) = cache.zip(entry.as_ref()).and_then(|(c, e)| c.get(e, dim)) {
            let n = values.len();
            states[i] =
                Some(model.image_state_from_embedding(Tensor::from_vec(values, n, &model.device)?));
            continue;
        }
        match decode_image(&path) {
            Ok(image) => pending.push((i, entry, model.pixels(&image)?)),
            Err(reason) => states[i] = Some(ImageState::none(reason)),
        }
        if pending.len() >= batch_size.max(1) {
            flush(&mut pending, &mut states)?;
        }
    }
    flush(&mut pending, &mut states)?;
    drop(task);
    Ok(states
        .into_iter()
        .map(|s| s.expect("every tweet has an image state"))
        .collect())
}
