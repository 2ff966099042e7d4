//! `promptmner pretrain-clip`: contrastive pretraining of a tiny CLIP on a dataset's
//! image captions (`captions.tsv`), so that prompt-image similarities mean something,
//! and its zero-shot scene accuracy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::TrainError;
use super::optim::AdamW;
use crate::data::images::{ClipPreprocess, ImageResolver};
use crate::data::tags::EntityType;
use crate::data::{read_conll, split_path};
use crate::model::clip::{ClipConfig, ClipModel, ClipTokenizer, l2_normalize};
use crate::model::ops::Mode;
use crate::model::store::write_tiny_clip;
use crate::progress::{Progress, Task};
use crate::prompts::Vocabulary;
use crate::run::config::OptimConfig;

/// Settings of a pretraining run.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            lr: 2e-3,
            seed: 2022,
        }
    }
}

/// What pretraining reports (also written to `pretrain.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PretrainReport {
    pub config: PretrainConfig,
    pub epoch_losses: Vec<f64>,
    /// Test images whose category's label prompt ranks first among the categories', in percent.
    pub zero_shot_accuracy: f64,
    pub test_images: usize,
}

/// `image_id → captions` of `captions.tsv`.
fn read_captions(path: &Path) -> Result<BTreeMap<String, Vec<String>>, TrainError> {
    let text = crate::util::read_text(path).map_err(|source| TrainError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let mut captions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        if let Some((id, caption)) = line.split_once('\t') {
            captions
                .entry(id.to_string())
                .or_default()
                .push(caption.to_string());
        }
    }
    Ok(captions)
}

/// Pixels [N, 3, s, s] of the split's images that have captions, with their ids.
fn split_pixels(
    data: &Path,
    split: &str,
    keep: impl Fn(&str) -> bool,
    pre: &ClipPreprocess,
    device: &Device,
) -> Result<(Vec<String>, Tensor), TrainError> {
    let resolver = ImageResolver::for_dataset(data, None);
    let mut ids = Vec::new();
    let mut pixels = Vec::new();
    let mut seen = BTreeSet::new();
    for tweet in read_conll(&split_path(data, split))? {
        let Some(id) = tweet.image_id else { continue };
        if !keep(&id) || !seen.insert(id.clone()) {
            continue;
        }
        if let Ok((_, image)) = resolver.load(Some(&id)) {
            let size = pre.crop_size as usize;
            pixels.push(Tensor::from_vec(
                pre.apply(&image),
                (3, size, size),
                device,
            )?);
            ids.push(id);
        }
    }
    Ok((ids, Tensor::stack(&pixels, 0)?))
}

/// Unit text embeddings of `texts` [n, e].
fn text_features(
    model: &ClipModel,
    tokenizer: &ClipTokenizer,
    texts: &[String],
    mode: Mode,
) -> Result<Tensor, TrainError> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.encode_prompt(t))
        .collect::<Result<_, _>>()?;
    let n = ids.iter().map(Vec::len).max().unwrap_or(1);
    let ends: Vec<usize> = ids.iter().map(|i| i.len() - 1).collect();
    let flat: Vec<u32> = ids
        .iter()
        .flat_map(|i| {
            i.iter()
                .copied()
                .chain(std::iter::repeat_n(tokenizer.end, n - i.len()))
        })
        .collect();
    let tokens =
        model
            .text
            .embed_tokens(&Tensor::from_vec(flat, (texts.len(), n), &model.device)?)?;
    Ok(l2_normalize(&model.text_embeds(&tokens, &ends, mode)?)?)
}

/// Cross-entropy of `logits` [n, m] against soft targets [n, m] (rows sum to 1).
fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (log_probs * targets)?.sum(D::Minus1)?.neg()?.mean_all()
}

/// Pretrains the CLIP in `init` (or, without it, a fresh tiny CLIP whose vocabulary is
/// the dataset's words) on `data/captions.tsv` and writes it to `out` in HF layout.
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
pub fn pretrain_clip(
    data: &Path,
    init: Option<&Path>,
    out: &Path,
    vocabulary: &Vocabulary,
    config: &PretrainConfig,
    device: &Device,
    progress: &dyn Progress,
) -> Result<PretrainReport, TrainError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| TrainError::Write { path, source: e }
    };
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let init: PathBuf = match init {
        Some(dir) => dir.to_path_buf(),
        None => {
            let mut words = crate::data::demo::dataset_words(data);
            for prompt in vocabulary.prompts() {
                words.extend(prompt.text.split(' ').map(str::to_string));
            }
            write_tiny_clip(out, &words, config.seed)?;
            out.to_path_buf()
        }
    };
    let clip_config = ClipConfig::load(&init.join("config.json"))?;
    let tokenizer = ClipTokenizer::load(
        &init.join("tokenizer.json"),
        clip_config.text_config.max_position_embeddings,
    )?;
    let varmap = VarMap::new();
    let model = ClipModel::load(
        VarBuilder::from_varmap(&varmap, DType::F32, device),
        &clip_config,
    )?;
    crate::model::load_into_varmap(&varmap, "", &init.join("model.safetensors"), "", device)?;
    let pre = ClipPreprocess::for_image_size(clip_config.vision_config.image_size as u32);

    let captions = read_captions(&data.join("captions.tsv"))?;
    let (train_ids, train_pixels) =
        split_pixels(data, "train", |id| captions.contains_key(id), &pre, device)?;

    let batches = train_ids.len().div_ceil(config.batch_size.max(1));
    let optim = OptimConfig {
        lr_new: config.lr,
        warmup: 0.05,
        weight_decay: 0.01,
        ..OptimConfig::default()
    };
    let mut optimizer = AdamW::new(&varmap, optim, batches * config.epochs);
    let tau = model.logit_scale as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut epoch_losses = Vec::new();
    let mut task = Task::start(
        progress,
        "pretraining CLIP",
        (config.epochs * train_ids.len()) as u64,
    );
    for _ in 0..config.epochs {
        let mut order: Vec<usize> = (0..train_ids.len()).collect();
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for batch in order.chunks(config.batch_size.max(1)) {
            let chosen: Vec<String> = batch
                .iter()
                .map(|&i| {
                    captions[&train_ids[i]]
                        .choose(&mut rng)
                        .expect("captions")
                        .clone()
                })
                .collect();
            // Image i and caption j match when j's caption is one of image i's.
            let matches: Vec<f32> = batch
                .iter()
                .flat_map(|&i| chosen.iter().map(move |c| (i, c)))
                .map(|(i, c)| {
                    if captions[&train_ids[i]].contains(c) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let b = batch.len();
            let matches = Tensor::from_vec(matches, (b, b), device)?;
            let image_targets = matches.broadcast_div(&matches.sum_keepdim(1)?)?;
            let text_targets = matches.t()?.broadcast_div(&matches.t()?.sum_keepdim(1)?)?;
            let index = Tensor::from_vec(
                batch.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                b,
                device,
            )?;
            let images = l2_normalize(
                &model.image_embeds(&train_pixels.index_select(&index, 0)?, Mode::Grad)?,
            )?;
            let texts = text_features(&model, &tokenizer, &chosen, Mode::Grad)?;
            let logits = (images.matmul(&texts.t()?)? * tau)?;
            let loss = ((soft_cross_entropy(&logits, &image_targets)?
                + soft_cross_entropy(&logits.t()?, &text_targets)?)?
                * 0.5)?;
            total += loss.to_scalar::<f32>()? as f64;
            let report = optimizer.step(&loss.backward()?, |_| None)?;
            tracing::debug!(
                "loss {:.4}, gradient norm {:.4}, lr scale {:.3}",
                loss.to_scalar::<f32>()?,
                report.grad_norm,
                report.schedule
            );
            match epoch_losses.last() {
                Some(mean) => task.advance_with(b as u64, &format!("loss {mean:.4}")),
                None => task.advance(b as u64),
            }
        }
        let mean = total / batches.max(1) as f64;
        epoch_losses.push(mean);
    }
    drop(task);

    let (accuracy, test_images) =
        zero_shot_accuracy(&model, &tokenizer, data, vocabulary, &pre, device)?;
    model_files(&init, out, &varmap)?;
    let report = PretrainReport {
        config: config.clone(),
        epoch_losses,
        zero_shot_accuracy: accuracy,
        test_images,
    };
    let json = serde_json::to_string_pretty(&report).expect("the report serialises");
    crate::util::write_atomic(&out.join("pretrain.json"), json.as_bytes())
        .map_err(write_err(out))?;
    Ok(report)
}

/// Writes the trained weights, and the config and tokenizer when `out` is not `init`.
fn model_files(init: &Path, out: &Path, varmap: &VarMap) -> Result<(), TrainError> {
    if init != out {
        for file in ["config.json", "tokenizer.json"] {
            std::fs::copy(init.join(file), out.join(file)).map_err(|source| TrainError::Write {
                path: out.join(file),
                source,
            })?;
        }
    }
    super::save_atomic(&out.join("model.safetensors"), |tmp| varmap.save(tmp))
}

/// Zero-shot scene accuracy on the test images of `meta.tsv`: the label prompt of the
/// image's category must rank first among the four categories' label prompts.
pub fn zero_shot_accuracy(
    model: &ClipModel,
    tokenizer: &ClipTokenizer,
    data: &Path,
    vocabulary: &Vocabulary,
    pre: &ClipPreprocess,
    device: &Device,
) -> Result<(f64, usize), TrainError> {
    let meta =
        crate::util::read_text(&data.join("meta.tsv")).map_err(|source| TrainError::Write {
            path: data.join("meta.tsv"),
            source,
        })?;
    let scene_of: BTreeMap<String, EntityType> = meta
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let scene = crate::data::demo::scenes::Scene::parse(cols.get(3)?)?;
            Some((cols.get(1)?.to_string(), scene.entity_type()))
        })
        .collect();
    let labels: Vec<String> = EntityType::ALL
        .iter()
        .map(|kind| {
            vocabulary
                .types
                .get(kind)
                .and_then(|w| w.labels.first())
                .map_or(kind.as_str().to_lowercase(), |w| vocabulary.fill(w))
        })
        .collect();
    let (ids, pixels) = split_pixels(data, "test", |id| scene_of.contains_key(id), pre, device)?;
    let texts = text_features(model, tokenizer, &labels, Mode::Eval)?;
    let images = l2_normalize(&model.image_embeds(&pixels, Mode::Eval)?)?;
    let best = images
        .matmul(&texts.t()?)?
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?;
    let right = ids
        .iter()
        .zip(best)
        .filter(|(id, b)| scene_of[*id].index() == *b as usize)
        .count();
    Ok((100.0 * right as f64 / ids.len().max(1) as f64, ids.len()))
}
