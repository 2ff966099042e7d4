//! The local model store: backbones resolved by name (in the platform cache directory)
//! or by path, listed, fetched from the Hugging Face hub, and the `tiny` backbones
//! written locally with random weights.

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

use super::clip::{ClipConfig, ClipModel, ClipTextConfig, ClipVisionConfig};
use super::ops::Activation;
use super::text::{BertConfig, BertModel};
use super::{Backbones, ModelConfig};

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
        "model '{name}' is neither a directory nor in the model store; run `promptmner models fetch {name}` \
         or place {} in {}",
        BACKBONE_FILES.join(", "),
        dir.display()
    )]
    NotFound { name: String, dir: PathBuf },
    #[error(
        "{dir} lacks {missing}: a backbone folder holds {} (`promptmner models fetch NAME` downloads them)",
        BACKBONE_FILES.join(", ")
    )]
    Incomplete { dir: PathBuf, missing: String },
    #[error(
        "cannot download {repo} from the Hugging Face hub ({reason}); without a network, download \
         {} from https://huggingface.co/{repo} by other means and place them in {}",
        BACKBONE_FILES.join(", "),
        dir.display()
    )]
    Download {
        repo: String,
        dir: PathBuf,
        reason: String,
    },
    #[error(
        "unknown model '{0}' (known: all-MiniLM-L6-v2, bert-base-cased, clip-vit-base-patch32, tiny, or a Hugging Face repository id such as owner/name)"
    )]
    Unknown(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// A directory of backbones by name.
#[derive(Debug, Clone)]
pub struct ModelStore {
    pub root: PathBuf,
}

/// A model directory in the store and which backbone files it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    pub name: String,
    pub dir: PathBuf,
    pub missing: Vec<&'static str>,
}

impl ModelStore {
    /// `$PROMPTMNER_MODELS`, else `<platform cache dir>/promptmner/models`.
    pub fn default_location() -> Self {
        let root = std::env::var_os("PROMPTMNER_MODELS")
            .map(PathBuf::from)
            .or_else(|| {
                directories::ProjectDirs::from("", "", "promptmner")
                    .map(|d| d.cache_dir().join("models"))
            })
            .unwrap_or_else(|| PathBuf::from(".promptmner/models"));
        Self { root }
    }

    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory of `name_or_path`: an existing directory as given, else the store's
    /// directory of that name. It must hold config.json, model.safetensors, tokenizer.json.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf, StoreError> {
        let direct = PathBuf::from(name_or_path);
        let dir = if direct.is_dir() {
            direct
        } else {
            let stored = self.root.join(local_name(name_or_path));
            if !stored.is_dir() {
                return Err(StoreError::NotFound {
                    name: name_or_path.to_string(),
                    dir: stored,
                });
            }
            stored
        };
        let missing = missing_files(&dir);
        if !missing.is_empty() {
            return Err(StoreError::Incomplete {
                dir,
                missing: missing.join(", "),
            });
        }
        Ok(dir)
    }

    /// Every directory in the store.
    pub fn list(&self) -> Vec<StoreEntry> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<StoreEntry> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| StoreEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                missing: missing_files(&e.path()),
                dir: e.path(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Downloads a model's backbone files from the hub into the store; `tiny` writes
    /// the tiny backbones from the embedded demo world instead.
    pub fn fetch(&self, name: &str) -> Result<Vec<PathBuf>, StoreError> {
        if name == "tiny" {
            let words = crate::data::demo::embedded_words();
            let backbones = write_tiny_backbones(&self.root, &words, 0)?;
            return Ok(vec![backbones.text, backbones.clip]);
        }
        let repo = KNOWN_MODELS
            .iter()
            .find(|(local, repo)| *local == name || *repo == name)
            .map(|(_, repo)| repo.to_string())
            .or_else(|| name.contains('/').then(|| name.to_string()))
            .ok_or_else(|| StoreError::Unknown(name.to_string()))?;
        let dir = self.root.join(local_name(name));
        let download_error = |reason: String| StoreError::Download {
            repo: repo.clone(),
            dir: dir.clone(),
            reason,
        };
        let api = hf_hub::api::sync::ApiBuilder::new()
            .with_progress(true)
            .build()
            .map_err(|e| download_error(e.to_string()))?;
        let model = api.model(repo.clone());
        // Everything is downloaded before the store directory is made, so a failed
        // fetch leaves nothing half-written behind.
        let cached = BACKBONE_FILES
            .iter()
            .map(|file| model.get(file).map_err(|e| download_error(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
        for (file, cached) in BACKBONE_FILES.iter().zip(cached) {
            let target = dir.join(file);
            std::fs::copy(&cached, &target).map_err(|e| write_error(&target, e))?;
        }
        Ok(vec![dir])
    }
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
