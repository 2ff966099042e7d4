//! The prompt bank: discrete prompts (the template filled with each vocabulary word)
//! and continuous prompts (a learnable token in the template's word slot), encoded by
//! the frozen CLIP text tower.

use std::ops::Range;
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use super::ModelError;
use super::clip::{ClipModel, ClipTokenizer, l2_normalize};
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

/// Encoded prompts, ready to be matched with images and fused. Its rows live on the
/// host, prompt-major, so that an edit of the vocabulary splices rows in and out
/// (`PromptBank::splice`) instead of assembling every prompt again.
pub struct PromptBank {
    pub prompts: Vec<PromptInfo>,
    /// The template the continuous prompts' rows were encoded in.
    pub(crate) template: String,
    /// Unit prompt embeddings s_i, row-major [K, e].
    pub(crate) embed_rows: Vec<f32>,
    pub(crate) width: usize,
    /// Clue keys and values per prompt (None when the model has no fusion layer).
    pub(crate) clues: Option<ClueRows>,
    device: Device,
    /// `embed_rows` as a tensor on the model's device, made when first asked for.
    embeds: OnceLock<Tensor>,
    /// Which prompt cache's encodings the rows are (0: none that may update it).
    pub(crate) stamp: u64,
}

/// A bank's clue keys and values with a_i factored out: the key of prompt i at weight
/// a_i is `a_i·pk_i + bk` (likewise values). Rows are prompt-major [K, d], head h at
/// columns h·dh..(h+1)·dh.
#[derive(Clone)]
pub(crate) struct ClueRows {
    pub pk: Vec<f32>,
    pub pv: Vec<f32>,
    /// What a clue of weight 0 gives (the projections' biases) [d].
    pub bk: Vec<f32>,
    pub bv: Vec<f32>,
}

/// Where a row of an updated bank comes from.
pub(crate) enum RowSource<'a> {
    /// Row `index` of the bank as it was.
    Kept(usize),
    /// Row `row` of an encoding (0 for a discrete prompt, i for continuous prompt i).
    Encoded(&'a PromptEncoding, usize),
}

impl PromptBank {
    /// A bank of `prompts` with their rows from `rows` (each an encoding and a row of it).
    pub(crate) fn new(
        prompts: Vec<PromptInfo>,
        template: &str,
        width: usize,
        clue_bias: Option<(Vec<f32>, Vec<f32>)>,
        rows: &[(&PromptEncoding, usize)],
        device: &Device,
    ) -> Self {
        let mut bank = Self {
            template: template.to_string(),
            embed_rows: Vec::with_capacity(rows.len() * width),
            width,
            clues: clue_bias.map(|(bk, bv)| ClueRows {
                pk: Vec::new(),
                pv: Vec::new(),
                bk,
                bv,
            }),
            device: device.clone(),
            embeds: OnceLock::new(),
            stamp: 0,
            prompts: Vec::new(),
        };
        let sources: Vec<RowSource> = rows
            .iter()
            .map(|&(encoding, row)| RowSource::Encoded(encoding, row))
            .collect();
        bank.splice(prompts, template, &sources);
        bank
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// Unit prompt embeddings s_i [K, e] on the model's device.
    pub fn embeds(&self) -> Result<&Tensor> {
        if let Some(embeds) = self.embeds.get() {
            return Ok(embeds);
        }
        let embeds = Tensor::from_slice(&self.embed_rows, (self.len(), self.width), &self.device)?;
        Ok(self.embeds.get_or_init(|| embeds))
    }

    /// The bank becomes `prompts` (encoded in `template`), row i from `sources[i]`,
    /// where the kept rows appear in their old order. In place: each run of changed
    /// rows is one splice of the row buffers; kept rows are not copied out and back.
    pub(crate) fn splice(
        &mut self,
        prompts: Vec<PromptInfo>,
        template: &str,
        sources: &[RowSource],
    ) {
        let regions = changed_regions(sources, self.len());
        fn embed(e: &PromptEncoding) -> &[f32] {
            &e.embed
        }
        splice_rows(&mut self.embed_rows, self.width, &regions, sources, embed);
        if let Some(clues) = &mut self.clues {
            let d = clues.bk.len();
            // A bank with clues is built from encodings with clue rows (one model).
            fn keys(e: &PromptEncoding) -> &[f32] {
                e.rows.as_ref().map_or(&[], |(pk, _)| pk)
            }
            fn values(e: &PromptEncoding) -> &[f32] {
                e.rows.as_ref().map_or(&[], |(_, pv)| pv)
            }
            splice_rows(&mut clues.pk, d, &regions, sources, keys);
            splice_rows(&mut clues.pv, d, &regions, sources, values);
        }
        self.prompts = prompts;
        self.template = template.to_string();
        self.embeds = OnceLock::new();
    }

    /// The bank without prompt `left_out` (leave-one-out attribution).
    pub fn without(&self, left_out: usize) -> Self {
        let drop_row = |rows: &[f32], cols: usize| -> Vec<f32> {
            let mut rows = rows.to_vec();
            rows.drain(left_out * cols..(left_out + 1) * cols);
            rows
        };
        let mut prompts = self.prompts.clone();
        prompts.remove(left_out);
        Self {
            prompts,
            template: self.template.clone(),
            embed_rows: drop_row(&self.embed_rows, self.width),
            width: self.width,
            clues: self.clues.as_ref().map(|c| ClueRows {
                pk: drop_row(&c.pk, c.bk.len()),
                pv: drop_row(&c.pv, c.bk.len()),
                bk: c.bk.clone(),
                bv: c.bv.clone(),
            }),
            device: self.device.clone(),
            embeds: OnceLock::new(),
            stamp: 0,
        }
    }
}

/// A run of changed rows: old rows `old` give way to the rows of `new` (indices into
/// the sources).
struct Region {
    old: Range<usize>,
    new: Range<usize>,
}

/// The runs of rows that change when a bank of `old_len` rows takes `sources`.
fn changed_regions(sources: &[RowSource], old_len: usize) -> Vec<Region> {
    let mut regions = Vec::new();
    let (mut old_next, mut run_start) = (0, 0);
    for (i, source) in sources.iter().enumerate() {
        if let RowSource::Kept(j) = *source {
            if j != old_next || run_start != i {
                regions.push(Region {
                    old: old_next..j,
                    new: run_start..i,
                });
            }
            old_next = j + 1;
            run_start = i + 1;
        }
    }
    if old_next != old_len || run_start != sources.len() {
        regions.push(Region {
            old: old_next..old_len,
            new: run_start..sources.len(),
        });
    }
    regions
}

/// Applies `regions` to a buffer of rows `cols` wide, from the last region back so
/// that the earlier ones' offsets hold.
fn splice_rows<'a>(
    rows: &mut Vec<f32>,
    cols: usize,
    regions: &[Region],
    sources: &[RowSource<'a>],
    pick: impl Fn(&'a PromptEncoding) -> &'a [f32],
) {
    for region in regions.iter().rev() {
        let inserted = sources[region.new.clone()]
            .iter()
            .flat_map(|source| match *source {
                RowSource::Encoded(encoding, row) => &pick(encoding)[row * cols..(row + 1) * cols],
                // Kept rows lie between regions, never inside one.
                RowSource::Kept(_) => &[][..],
            });
        rows.splice(
            region.old.start * cols..region.old.end * cols,
            inserted.copied(),
        );
    }
}

/// What the prompt stage computes of one prompt (or, for the continuous prompts, of
/// all of them as rows), on the host: unit embeddings `[N, e]` and clue rows `[N, d]`
/// (none without fusion); N = 1 for a discrete prompt. Prompt caches hold these.
#[derive(Clone)]
pub struct PromptEncoding {
    pub(crate) embed: Vec<f32>,
    pub(crate) rows: Option<(Vec<f32>, Vec<f32>)>,
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
