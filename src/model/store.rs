//! The local model store: backbones resolved by path, by name in the store (the
//! platform cache directory), or from the Hugging Face cache that `transformers` shares,
//! in place; listed; fetched from the hub (or a mirror) into that cache; and the `tiny`
//! backbones written locally with random weights.

use std::collections::BTreeSet;

use ahash::AHashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::normalizers::utils::Lowercase;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::template::TemplateProcessing;

use super::bert::{BertConfig, BertModel};
use super::clip::{ClipConfig, ClipModel, ClipTextConfig, ClipVisionConfig};
use super::hub::{self, HubSettings};
use super::ops::Activation;
use super::{Backbones, ModelConfig};
use crate::progress::Progress;

/// Files every backbone directory holds.
pub const BACKBONE_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Models the store knows how to fetch: local name and Hugging Face repository.
pub const KNOWN_MODELS: [(&str, &str); 3] = [
    ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ("bert-base-cased", "google-bert/bert-base-cased"),
    ("clip-vit-base-patch32", "openai/clip-vit-base-patch32"),
];

/// Names of the locally generated tiny backbones.
pub const TINY_TEXT: &str = "tiny-bert";
pub const TINY_CLIP: &str = "tiny-clip";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "model '{name}' is not a directory, not in the model store ({dir}) and not in the Hugging Face cache ({hub_cache}); run `promptmner models fetch {name}` or place {} in {}",
        BACKBONE_FILES.join(", "),
        dir.display()
    )]
    NotFound {
        name: String,
        dir: PathBuf,
        hub_cache: PathBuf,
    },
    #[error(
        "{dir} lacks {missing}: a backbone folder holds {} (`promptmner models fetch NAME` downloads them)",
        BACKBONE_FILES.join(", ")
    )]
    Incomplete { dir: PathBuf, missing: String },
    #[error(
        "{dir} has pytorch_model.bin but no model.safetensors: `promptmner models fetch {name}` converts it into the model store (no download)"
    )]
    NeedsConversion { name: String, dir: PathBuf },
    /// Boxed: the hub's errors carry several strings, and every model error holds this.
    #[error(transparent)]
    Hub(Box<super::hub::HubError>),
    #[error("cannot convert {path} to safetensors")]
    Convert {
        path: PathBuf,
        source: Box<candle_core::Error>,
    },
    #[error(
        "unknown model '{0}' (known: all-MiniLM-L6-v2, bert-base-cased, clip-vit-base-patch32, the presets tiny, minilm and base, or a Hugging Face repository id such as owner/name)"
    )]
    Unknown(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl From<super::hub::HubError> for StoreError {
    fn from(error: super::hub::HubError) -> Self {
        StoreError::Hub(Box::new(error))
    }
}

/// A directory of backbones by name, and the hub they come from.
#[derive(Debug, Clone)]
pub struct ModelStore {
    pub root: PathBuf,
    pub hub: HubSettings,
}

/// A model directory in the store and which backbone files it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    pub name: String,
    pub dir: PathBuf,
    pub missing: Vec<&'static str>,
}

impl ModelStore {
    /// `$PROMPTMNER_MODELS`, else `<platform cache dir>/promptmner/models`; the hub as
    /// the environment sets it (`HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`, ...).
    pub fn default_location() -> Self {
        let root = std::env::var_os("PROMPTMNER_MODELS")
            .map(PathBuf::from)
            .or_else(|| {
                directories::ProjectDirs::from("", "", "promptmner")
                    .map(|d| d.cache_dir().join("models"))
            })
            .unwrap_or_else(|| PathBuf::from(".promptmner/models"));
        Self::new(root)
    }

    /// A store at `root` with the environment's hub settings.
    pub fn new(root: PathBuf) -> Self {
        Self::with_hub(root, HubSettings::from_env())
    }

    pub fn with_hub(root: PathBuf, hub: HubSettings) -> Self {
        Self { root, hub }
    }

    /// The directory of `name_or_path`: an existing directory as given, else the store's
    /// directory of that name, else the Hugging Face cache's snapshot of the repository
    /// it names (used in place, nothing downloaded). It must hold config.json,
    /// model.safetensors, tokenizer.json.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf, StoreError> {
        let direct = PathBuf::from(name_or_path);
        let stored = self.root.join(local_name(name_or_path));
        let dir = if direct.is_dir() {
            direct
        } else if stored.is_dir() {
            stored
        } else if let Some(snapshot) = self.cached_snapshot(name_or_path) {
            snapshot
        } else {
            return Err(StoreError::NotFound {
                name: name_or_path.to_string(),
                dir: stored,
                hub_cache: self.hub.cache.clone(),
            });
        };
        let missing = missing_files(&dir);
        if missing == ["model.safetensors"] && dir.join("pytorch_model.bin").is_file() {
            return Err(StoreError::NeedsConversion {
                name: name_or_path.to_string(),
                dir,
            });
        }
        if !missing.is_empty() {
            return Err(StoreError::Incomplete {
                dir,
                missing: missing.join(", "),
            });
        }
        Ok(dir)
    }

    /// The hub cache's snapshot of the repository `name` stands for (its own id, and the
    /// legacy id without an organisation that older `transformers` cached under).
    fn cached_snapshot(&self, name: &str) -> Option<PathBuf> {
        let repo = repo_of(name)?;
        let legacy = repo.rsplit('/').next().unwrap_or(&repo).to_string();
        [repo, legacy]
            .iter()
            .filter_map(|r| self.hub.snapshot(r))
            .find(|s| s.join("config.json").is_file())
    }

    /// Every directory in the store.
    pub fn list(&self) -> Vec<StoreEntry> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<StoreEntry> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| StoreEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                missing: missing_files(&e.path()),
                dir: e.path(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Fetches a model's backbone files (both of a preset's: `minilm`, `base`) into the
    /// hub cache and names them in the store (links, so nothing is copied); `tiny`
    /// writes the tiny backbones from the embedded demo world instead.
    pub fn fetch(&self, name: &str, progress: &dyn Progress) -> Result<Vec<PathBuf>, StoreError> {
        if name == "tiny" {
            let words = crate::prompts::demo::words();
            let backbones = write_tiny_backbones(&self.root, &words, 0)?;
            return Ok(vec![backbones.text, backbones.clip]);
        }
        if let Some(preset) = [Preset::Minilm, Preset::Base]
            .into_iter()
            .find(|p| format!("{p:?}").eq_ignore_ascii_case(name))
        {
            let (text, clip) = preset.backbone_names();
            return Ok(vec![
                self.fetch_one(text, progress)?,
                self.fetch_one(clip, progress)?,
            ]);
        }
        Ok(vec![self.fetch_one(name, progress)?])
    }

    /// One repository's config, tokenizer and weights; `pytorch_model.bin` where the
    /// main branch has no safetensors, converted into the store.
    fn fetch_one(&self, name: &str, progress: &dyn Progress) -> Result<PathBuf, StoreError> {
        let repo = repo_of(name).ok_or_else(|| StoreError::Unknown(name.to_string()))?;
        let config = hub::fetch_file(&self.hub, &repo, "config.json", progress)?;
        let tokenizer = hub::fetch_file(&self.hub, &repo, "tokenizer.json", progress)?;
        let weights = match hub::fetch_file(&self.hub, &repo, "model.safetensors", progress) {
            Ok(path) => Weights::Safetensors(path),
            Err(hub::HubError::EntryNotFound { .. }) => Weights::Pickle(hub::fetch_file(
                &self.hub,
                &repo,
                "pytorch_model.bin",
                progress,
            )?),
            Err(e) => return Err(e.into()),
        };
        // Built beside the store entry, then renamed over it: a failure leaves the old
        // entry or none, never half of one.
        let dir = self.root.join(local_name(name));
        std::fs::create_dir_all(&self.root).map_err(|e| write_error(&self.root, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&self.root)
            .map_err(|e| write_error(&self.root, e))?;
        let link = |target: &Path, file: &str| {
            let path = staging.path().join(file);
            std::os::unix::fs::symlink(target, &path).map_err(|e| write_error(&path, e))
        };
        link(&config, "config.json")?;
        link(&tokenizer, "tokenizer.json")?;
        match weights {
            Weights::Safetensors(path) => link(&path, "model.safetensors")?,
            Weights::Pickle(path) => {
                convert_pickle(&path, &staging.path().join("model.safetensors"))?
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let staged = staging.keep();
        std::fs::rename(&staged, &dir).map_err(|e| write_error(&dir, e))?;
        Ok(dir)
    }
}

/// Where a fetched model's weights came from.
enum Weights {
    Safetensors(PathBuf),
    Pickle(PathBuf),
}

/// A PyTorch `pytorch_model.bin` (zip format) rewritten as safetensors, tensor for tensor.
fn convert_pickle(bin: &Path, out: &Path) -> Result<(), StoreError> {
    let convert = |source| StoreError::Convert {
        path: bin.to_path_buf(),
        source: Box::new(source),
    };
    let tensors: std::collections::HashMap<String, candle_core::Tensor> =
        candle_core::pickle::read_all(bin)
            .map_err(convert)?
            .into_iter()
            .collect();
    candle_core::safetensors::save(&tensors, out).map_err(convert)
}

/// The hub repository a model name stands for: a known short name's, or `org/name`.
fn repo_of(name: &str) -> Option<String> {
    KNOWN_MODELS
        .iter()
        .find(|(local, repo)| *local == name || *repo == name)
        .map(|(_, repo)| repo.to_string())
        .or_else(|| {
            let plain = name.split('/').all(crate::util::is_plain_name);
            (name.matches('/').count() == 1 && plain).then(|| name.to_string())
        })
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The store's directory name of a model: the known short name, or the repository's.
fn local_name(name: &str) -> String {
    KNOWN_MODELS
        .iter()
        .find(|(_, repo)| *repo == name)
        .map(|(local, _)| local.to_string())
        .unwrap_or_else(|| name.rsplit('/').next().unwrap_or(name).to_string())
}

fn missing_files(dir: &Path) -> Vec<&'static str> {
    BACKBONE_FILES
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

/// The model presets of DESIGN §6: backbone names and layer settings.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Random initialisation and small widths, for tests (`models fetch tiny`).
    Tiny,
    /// all-MiniLM-L6-v2 with CLIP ViT-B/32.
    Minilm,
    /// bert-base-cased with CLIP ViT-B/32 (paper scale).
    Base,
}

impl Preset {
    /// Text and CLIP backbone names.
    pub fn backbone_names(self) -> (&'static str, &'static str) {
        match self {
            Preset::Tiny => (TINY_TEXT, TINY_CLIP),
            Preset::Minilm => ("all-MiniLM-L6-v2", "clip-vit-base-patch32"),
            Preset::Base => ("bert-base-cased", "clip-vit-base-patch32"),
        }
    }

    pub fn model_config(self) -> ModelConfig {
        match self {
            Preset::Tiny => ModelConfig {
                fusion_heads: 2,
                continuous_prompts: 4,
                span_hidden: 32,
                ..ModelConfig::default()
            },
            Preset::Minilm => ModelConfig {
                fusion_heads: 6,
                ..ModelConfig::default()
            },
            Preset::Base => ModelConfig {
                fusion_heads: 8,
                continuous_prompts: 100,
                ..ModelConfig::default()
            },
        }
    }

    /// The preset's backbones, resolved through the store.
    pub fn resolve(self, store: &ModelStore) -> Result<Backbones, StoreError> {
        let (text, clip) = self.backbone_names();
        Ok(Backbones {
            text: store.resolve(text)?,
            clip: store.resolve(clip)?,
        })
    }
}

/// Writes `tiny-bert` and `tiny-clip` into `root`: HF-layout directories with small
/// random weights (seeded) and word-level tokenizers over `words`.
pub fn write_tiny_backbones(
    root: &Path,
    words: &BTreeSet<String>,
    seed: u64,
) -> Result<Backbones, StoreError> {
    Ok(Backbones {
        text: write_tiny_text(&root.join(TINY_TEXT), words, seed)?,
        clip: write_tiny_clip(&root.join(TINY_CLIP), words, seed + 1)?,
    })
}

fn lowercase_words(words: &BTreeSet<String>) -> BTreeSet<String> {
    words.iter().map(|w| w.to_lowercase()).collect()
}

/// Writes a tiny BERT into `text_dir`: a WordPiece vocabulary of the words plus single
/// characters (so any word tokenises), BERT's normaliser and pre-tokeniser.
pub fn write_tiny_text(
    text_dir: &Path,
    words: &BTreeSet<String>,
    seed: u64,
) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(text_dir).map_err(|e| write_error(text_dir, e))?;
    let lower = lowercase_words(words);
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    let chars: BTreeSet<char> = lower
        .iter()
        .flat_map(|w| w.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    vocab.extend(chars.iter().map(|c| c.to_string()));
    vocab.extend(chars.iter().map(|c| format!("##{c}")));
    vocab.extend(
        lower
            .iter()
            .filter(|w| w.chars().count() > 1 && w.chars().all(char::is_alphanumeric))
            .cloned(),
    );
    let map: AHashMap<String, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), i as u32))
        .collect();
    let wordpiece = WordPiece::builder()
        .vocab(map)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| write_error(text_dir, e))?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    tokenizer
        .with_normalizer(Some(BertNormalizer::default()))
        .map_err(|e| write_error(text_dir, e))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tokenizer
        .save(text_dir.join("tokenizer.json"), false)
        .map_err(|e| write_error(text_dir, e))?;
    let bert = BertConfig {
        vocab_size: vocab.len(),
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        hidden_act: Activation::Gelu,
        max_position_embeddings: 128,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    };
    write_random(text_dir, &bert, seed, |vb| {
        BertModel::load(vb, &bert).map(drop)
    })?;

    Ok(text_dir.to_path_buf())
}

/// Writes a tiny CLIP into `clip_dir`: a word-level vocabulary with start and end tokens,
/// a 96-pixel vision tower.
pub fn write_tiny_clip(
    clip_dir: &Path,
    words: &BTreeSet<String>,
    seed: u64,
) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(clip_dir).map_err(|e| write_error(clip_dir, e))?;
    let lower = lowercase_words(words);
    let mut clip_vocab: Vec<String> = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
        .map(String::from)
        .to_vec();
    let specials: BTreeSet<String> = clip_vocab.iter().cloned().collect();
    clip_vocab.extend(lower.difference(&specials).cloned());
    let clip_map: AHashMap<String, u32> = clip_vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), i as u32))
        .collect();
    let wordlevel = WordLevel::builder()
        .vocab(clip_map)
        .unk_token("<unk>".into())
        .build()
        .map_err(|e| write_error(clip_dir, e))?;
    let mut tokenizer = Tokenizer::new(wordlevel);
    tokenizer
        .with_normalizer(Some(Lowercase))
        .map_err(|e| write_error(clip_dir, e))?;
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    let template = TemplateProcessing::builder()
        .try_single("<|startoftext|> $A <|endoftext|>")
        .map_err(|e| write_error(clip_dir, e))?
        .special_tokens(vec![("<|startoftext|>", 0), ("<|endoftext|>", 1)])
        .build()
        .map_err(|e| write_error(clip_dir, e))?;
    tokenizer.with_post_processor(Some(template));
    tokenizer
        .save(clip_dir.join("tokenizer.json"), false)
        .map_err(|e| write_error(clip_dir, e))?;
    let clip = ClipConfig {
        text_config: ClipTextConfig {
            vocab_size: clip_vocab.len(),
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            max_position_embeddings: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        vision_config: ClipVisionConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            // The demo's images are 96×96: the tiny tower sees them as they are.
            image_size: 96,
            patch_size: 16,
            num_channels: 3,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 16,
    };
    write_random(clip_dir, &clip, seed, |vb| {
        ClipModel::load(vb, &clip).map(drop)
    })?;
    Ok(clip_dir.to_path_buf())
}

/// Writes `config.json` and `model.safetensors` of randomly initialised weights (seeded:
/// the same bytes every time).
pub fn write_random<C: serde::Serialize>(
    dir: &Path,
    config: &C,
    seed: u64,
    build: impl Fn(VarBuilder) -> candle_core::Result<()>,
) -> Result<(), StoreError> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
        .map_err(|e| write_error(dir, e))?;
    super::ops::reinitialize(&varmap, "", seed).map_err(|e| write_error(dir, e))?;
    let json = serde_json::to_string_pretty(config).map_err(|e| write_error(dir, e))?;
    crate::util::write_atomic(&dir.join("config.json"), json.as_bytes())
        .map_err(|e| write_error(dir, e))?;
    varmap
        .save(dir.join("model.safetensors"))
        .map_err(|e| write_error(dir, e))
}
