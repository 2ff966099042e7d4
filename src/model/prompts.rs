//! The prompt bank: discrete prompts (the template filled with each vocabulary word)
//! and continuous prompts (a learnable token in the template's word slot), encoded by
//! the frozen CLIP text tower.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use super::ModelError;
use super::clip::{ClipModel, ClipTokenizer, l2_normalize};
use super::fusion::ClueSide;
use super::ops::Mode;
use crate::data::tags::EntityType;
use crate::prompts::{Vocabulary, WordList};

/// Where a prompt came from, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum PromptSource {
    Discrete {
        word: String,
        kind: EntityType,
        list: WordList,
    },
    /// The i-th learned prompt.
    Continuous { index: usize },
}

/// One prompt of a bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptInfo {
    /// The prompt's text; continuous prompts show the template with `<v_i>` in the slot.
    pub text: String,
    #[serde(flatten)]
    pub source: PromptSource,
}

/// Encoded prompts, ready to be matched with images and fused.
pub struct PromptBank {
    pub prompts: Vec<PromptInfo>,
    /// Unit prompt embeddings s_i [K, e].
    pub embeds: Tensor,
    /// Clue keys and values per prompt (None when the model has no fusion layer).
    pub(crate) clues: Option<ClueSide>,
}

impl PromptBank {
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The bank without prompt `left_out` (leave-one-out attribution).
    pub fn without(&self, left_out: usize) -> Result<Self> {
        let keep: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| i as usize != left_out)
            .collect();
        let keep = Tensor::new(keep.as_slice(), self.embeds.device())?;
        let mut prompts = self.prompts.clone();
        prompts.remove(left_out);
        Ok(Self {
            prompts,
            embeds: self.embeds.index_select(&keep, 0)?,
            clues: self.clues.as_ref().map(|c| c.select(&keep)).transpose()?,
        })
    }
}

/// What the prompt stage computes of one prompt (or, for the continuous prompts, of
/// all of them as rows): unit embeddings `[e]` / `[N, e]` and clue rows `[d]` / `[N, d]` (none
/// without fusion). Prompt caches hold these.
#[derive(Clone)]
pub struct PromptEncoding {
    pub(crate) embed: Tensor,
    pub(crate) rows: Option<(Tensor, Tensor)>,
}

/// Learnable token embeddings for the word slot of the template.
pub struct ContinuousPrompts {
    /// [N, clip text hidden]
    pub vectors: Tensor,
}

impl ContinuousPrompts {
    pub fn load(vb: VarBuilder, count: usize, width: usize) -> Result<Self> {
        let vectors = vb.get_with_hints(
            (count, width),
            "continuous",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        Ok(Self { vectors })
    }

    pub fn len(&self) -> usize {
        self.vectors.dim(0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unit embeddings [n, e] of the first `n` continuous prompts in `template`.
    pub fn encode(
        &self,
        clip: &ClipModel,
        tokenizer: &ClipTokenizer,
        template: &str,
        n: usize,
        mode: Mode,
    ) -> std::result::Result<Tensor, ModelError> {
        let (prefix, suffix) = template.split_once("{}").unwrap_or((template, ""));
        let (start, end) = (tokenizer.start, tokenizer.end);
        let embed = |ids: Vec<u32>| -> Result<Tensor> {
            let len = ids.len();
            clip.text
                .embed_tokens(&Tensor::from_vec(ids, (1, len), &clip.device)?)?
                .broadcast_as((n, len, clip.text.config.hidden_size))?
                .contiguous()
        };
        let mut left = vec![start];
        left.extend(tokenizer.encode_words(prefix.trim())?);
        let mut right = tokenizer.encode_words(suffix.trim())?;
        right.push(end);
        let length = left.len() + 1 + right.len();
        let context = clip.text.config.max_position_embeddings;
        if length > context {
            return Err(ModelError::Invalid(format!(
                "template '{template}' takes {length} tokens with its start, end and the word's slot; this CLIP reads at most {context}: shorten the template"
            )));
        }
        let slot = self.vectors.narrow(0, 0, n)?.unsqueeze(1)?;
        let tokens = Tensor::cat(
            &[&embed(left)?, &slot.to_dtype(DType::F32)?, &embed(right)?],
            1,
        )?;
        let ends = vec![length - 1; n];
        Ok(l2_normalize(&clip.text_embeds(&tokens, &ends, mode)?)?)
    }
}

/// Unit embeddings [K, e] of discrete prompt texts, batched (padded with the end token;
/// CLIP's causal mask makes the padding irrelevant at each prompt's end token).
pub fn encode_texts(
    clip: &ClipModel,
    tokenizer: &ClipTokenizer,
    texts: &[String],
) -> std::result::Result<Tensor, ModelError> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.encode_prompt(t))
        .collect::<std::result::Result<_, _>>()?;
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
    let ids = Tensor::from_vec(flat, (texts.len(), n), &clip.device)?;
    let tokens = clip.text.embed_tokens(&ids)?;
    Ok(l2_normalize(&clip.text_embeds(
        &tokens,
        &ends,
        Mode::Eval,
    )?)?)
}

/// The prompts a vocabulary gives, discrete then `n_continuous` continuous ones.
pub fn prompt_infos(
    vocabulary: &Vocabulary,
    discrete: bool,
    n_continuous: usize,
) -> Vec<PromptInfo> {
    let mut infos: Vec<PromptInfo> = if discrete {
        vocabulary
            .prompts()
            .into_iter()
            .map(|p| PromptInfo {
                text: p.text,
                source: PromptSource::Discrete {
                    word: p.word,
                    kind: p.kind,
                    list: p.list,
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    infos.extend((0..n_continuous).map(|index| PromptInfo {
        text: vocabulary.fill(&format!("<v{index}>")),
        source: PromptSource::Continuous { index },
    }));
    infos
}
