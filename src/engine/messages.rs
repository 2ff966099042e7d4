//! What crosses between the engine's worker and its caller: requests in, events out,
//! all plain Rust values (no tensor, no model type), each with a generation number.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::spans::Span;
use crate::data::tags::EntityType;
use crate::eval::score::{ScoreReport, SpanError};
use crate::model::fusion::FusionMode;
use crate::model::prompts::PromptSource;
use crate::model::span::{PredictedSpan, ScoredSpan};
use crate::prompts::Vocabulary;

/// Which image a tweet is scored with (the counterfactual view switches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageChoice {
    /// As if the tweet had no image.
    None,
    /// The tweet's own image.
    Own,
    /// The image of another tweet of the split (by index).
    FromTweet(usize),
}

/// What the caller asks of the worker.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Select(usize),
    SetVocabulary(Box<Vocabulary>),
    SetContinuous(usize),
    SetImage {
        tweet: usize,
        image: ImageChoice,
    },
    Rescore,
    Cancel,
    /// Leave-one-prompt-out attribution of one candidate span of a tweet.
    Attribute {
        tweet: usize,
        start: usize,
        end: usize,
    },
}

impl Request {
    /// Requests of one kind replace each other: only the newest matters. Image
    /// overrides are per tweet.
    pub(crate) fn kind(&self) -> (u8, usize) {
        match self {
            Request::Select(_) => (0, 0),
            Request::SetVocabulary(_) => (1, 0),
            Request::SetContinuous(_) => (2, 0),
            Request::SetImage { tweet, .. } => (3, *tweet),
            Request::Rescore => (4, 0),
            Request::Cancel => (5, 0),
            Request::Attribute { .. } => (6, 0),
        }
    }
}

/// A request and its generation (the caller's counter, newest highest).
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub generation: u64,
    pub request: Request,
}

/// One tweet of the split, as loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TweetInfo {
    pub words: Vec<String>,
    pub gold: Vec<Span>,
    pub image_id: Option<String>,
    /// The image file the id resolves to, when it exists.
    pub image_path: Option<std::path::PathBuf>,
}

/// A prompt and how well it matches the image in view (a_i).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptScore {
    pub text: String,
    #[serde(flatten)]
    pub source: PromptSource,
    pub similarity: f32,
}

/// The image a tweet was scored with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageView {
    pub choice: ImageChoice,
    /// The tweet whose image was used, when there was one.
    pub from_tweet: Option<usize>,
    /// Why there was no image (no id, file missing, unreadable, switched off).
    pub no_image: Option<String>,
}

/// Everything the model says about one tweet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TweetView {
    pub index: usize,
    pub words: Vec<String>,
    pub gold: Vec<Span>,
    /// Decoded entities with the probability of their type.
    pub predicted: Vec<PredictedSpan>,
    /// Every candidate span with its class probabilities (PER, LOC, ORG, OTHER, NONE).
    pub candidates: Vec<ScoredSpan>,
    /// Each prompt with its similarity to the image (empty without an image).
    pub prompts: Vec<PromptScore>,
    /// Per word, the attention mass on each prompt's clue (empty without an image).
    pub clue_attention: Vec<Vec<f32>>,
    pub image: ImageView,
    pub truncated_words: usize,
}

/// A whole-split scoring.
#[derive(Debug, Clone, Serialize)]
pub struct SplitView {
    pub report: ScoreReport,
    /// Micro F1 minus the checkpoint vocabulary's (None until that is known).
    pub delta_f1: Option<f64>,
    /// Per type F1 minus the checkpoint vocabulary's.
    pub delta_per_type: BTreeMap<EntityType, f64>,
    /// Per tweet, its errors (for the misclassified filters).
    pub tweet_errors: Vec<Vec<SpanError>>,
    /// Per tweet, its predicted entities.
    pub predicted: Vec<Vec<PredictedSpan>>,
    /// Per tweet, each prompt's similarity a_i in the bank's order (empty without an
    /// image).
    pub similarities: Vec<Vec<f32>>,
    /// Whether this scoring used the checkpoint's own vocabulary and continuous count.
    pub is_baseline: bool,
    pub seconds: f64,
}

/// A case-study figure of one tweet: its words and gold from the first view, a row of
/// predictions per view (A, then B), the first view's top `prompts` a_i as bars, and
/// the image (or why there is none).
pub fn case_study(
    title: String,
    views: &[(String, &TweetView)],
    image: Result<&image::DynamicImage, String>,
    prompts: usize,
) -> Result<crate::eval::figure::CaseStudy, crate::eval::figure::FigureError> {
    use crate::eval::figure::{CaseStudy, ModelRow, PromptBar, image_png, top_prompts};
    let first = views.first().map(|(_, view)| *view);
    let bars = first.map_or_else(Vec::new, |view| {
        view.prompts
            .iter()
            .map(|p| {
                let (label, kind) = match &p.source {
                    PromptSource::Discrete { word, kind, list } => {
                        (format!("{word} · {kind} {list}"), Some(*kind))
                    }
                    PromptSource::Continuous { index } => (format!("continuous #{index}"), None),
                };
                PromptBar {
                    label,
                    kind,
                    similarity: p.similarity,
                }
            })
            .collect()
    });
    let (image_png, no_image) = match image {
        Ok(picture) => (Some(image_png(picture)?), None),
        Err(why) => (None, Some(why)),
    };
    Ok(CaseStudy {
        title,
        words: first.map_or_else(Vec::new, |v| v.words.clone()),
        gold: first.map_or_else(Vec::new, |v| v.gold.clone()),
        models: views
            .iter()
            .map(|(name, view)| ModelRow {
                name: name.clone(),
                spans: view.predicted.iter().map(|p| p.span).collect(),
            })
            .collect(),
        prompts: top_prompts(bars, prompts),
        image_png,
        no_image,
    })
}

impl SplitView {
    /// Tweet `index`'s predicted entities (none when it was not scored).
    pub fn spans_of(&self, index: usize) -> Vec<Span> {
        self.predicted
            .get(index)
            .map(|p| p.iter().map(|p| p.span).collect())
            .unwrap_or_default()
    }

    /// Every tweet's predicted entities.
    pub fn spans(&self) -> Vec<Vec<Span>> {
        (0..self.predicted.len())
            .map(|i| self.spans_of(i))
            .collect()
    }
}

/// How one prompt bears on a span: the change in the probability of the span's class
/// when the prompt is left out (negative: the prompt supported it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptEffect {
    pub text: String,
    #[serde(flatten)]
    pub source: PromptSource,
    pub change: f32,
}

/// Leave-one-prompt-out attribution of a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributionView {
    pub tweet: usize,
    pub start: usize,
    pub end: usize,
    /// The span's most probable class (index into PER, LOC, ORG, OTHER, NONE).
    pub class: usize,
    /// Its probability with every prompt.
    pub probability: f32,
    /// Per prompt of the bank, in bank order.
    pub effects: Vec<PromptEffect>,
}

/// Why a rescoring stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A newer edit arrived; its own rescoring follows.
    Superseded,
    Cancelled,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The checkpoint and split are loaded (generation 0).
    Loaded {
        tweets: Vec<TweetInfo>,
        vocabulary: Box<Vocabulary>,
        continuous: usize,
        continuous_trained: usize,
        fusion: FusionMode,
    },
    Tweet {
        generation: u64,
        view: Box<TweetView>,
    },
    Progress {
        generation: u64,
        task: String,
        done: u64,
        total: u64,
    },
    Scores {
        generation: u64,
        view: Box<SplitView>,
    },
    RescoreStopped {
        generation: u64,
        reason: StopReason,
    },
    /// More continuous prompts than the checkpoint trained: a retrain is needed.
    RetrainNeeded {
        generation: u64,
        requested: usize,
        trained: usize,
    },
    Attribution {
        generation: u64,
        view: Box<AttributionView>,
    },
    Error {
        generation: u64,
        message: String,
    },
}
