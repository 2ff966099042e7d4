//! `promptmner tui` and `promptmner show`: the workbench's front ends.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::data::images::ImageResolver;
use crate::data::{SPLITS, Span, read_conll, split_path};
use crate::engine::{Engine, EngineOptions, Event};
use crate::model::device::{self, DeviceChoice, Precision};
use crate::tui::components::tweet::{Predicted, text_lines};
use crate::tui::{self, TuiOptions};

/// Whether standard input and output are a terminal the workbench can take over.
pub(super) fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

#[derive(Debug, clap::Args)]
pub struct TuiArgs {
    /// Dataset directory (train.txt, valid.txt, test.txt, images/).
    #[arg(long)]
    pub data: PathBuf,
    /// Checkpoint directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Vocabulary to start from and to save to (default: the checkpoint's; saves go to
    /// <checkpoint>-prompts.toml beside it).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Images directory, instead of DATA/images.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Products in bf16 where the CPU has AVX512_BF16 (else fp32, with a warning).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Write frame-time figures (JSON) to this file on exit.
    #[arg(long, hide = true)]
    pub frame_stats: Option<PathBuf>,
    /// The runs folder for ablation retrains (default: $PROMPTMNER_RUNS, else the
    /// platform data directory).
    #[arg(long)]
    pub runs: Option<PathBuf>,
    /// A second checkpoint (B): its predictions under A's, a filter where they
    /// disagree, and both scores.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Candidate words for `S` (one per line), instead of the vocabulary's `candidates`.
    #[arg(long)]
    pub candidates: Option<PathBuf>,
}

impl TuiArgs {
    pub fn demo(data: PathBuf, checkpoint: PathBuf) -> Self {
        Self {
            data,
            checkpoint,
            split: "test".into(),
            prompts: None,
            images: None,
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
            frame_stats: None,
            runs: None,
            compare: None,
            candidates: None,
        }
    }
}

pub(super) fn tui(args: &TuiArgs) -> anyhow::Result<()> {
    if !on_terminal() {
        bail!("the workbench needs a terminal; `promptmner eval` prints the same scores");
    }
    let options = TuiOptions {
        data: args.data.clone(),
        checkpoint: args.checkpoint.clone(),
        split: args.split.clone(),
        prompts: args.prompts.clone(),
        device: device::select(args.device)?,
        precision: args.precision,
        images: args.images.clone(),
        frame_stats: args.frame_stats.clone(),
        runs_root: args
            .runs
            .clone()
            .unwrap_or_else(crate::jobs::registry::default_root),
        compare: args.compare.clone(),
        candidates: match &args.candidates {
            Some(path) => Some(crate::engine::suggest::read_candidates(path)?),
            None => None,
        },
    };
    tui::run(options)?;
    Ok(())
}

/// One tweet of a dataset and how to run a checkpoint on it (`show`, `figure`).
#[derive(Debug, clap::Args)]
pub struct TweetArgs {
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The tweet: its image id (IMGID), or SPLIT-INDEX such as test-12.
    #[arg(long)]
    pub id: String,
    /// Images directory, instead of DATA/images.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub tweet: TweetArgs,
    /// Also show this checkpoint's predicted spans.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Width of the printed image in columns.
    #[arg(long, default_value_t = 40)]
    pub width: u32,
}

/// Finds a tweet by `split-index` or by image id; returns (split, index).
fn find_tweet(
    data: &std::path::Path,
    id: &str,
) -> anyhow::Result<(String, usize, crate::data::Tweet)> {
    if let Some((split, index)) = id.rsplit_once('-')
        && let (true, Ok(index)) = (SPLITS.contains(&split), index.parse::<usize>())
    {
        let tweets = read_conll(&split_path(data, split))?;
        let count = tweets.len();
        let tweet = tweets
            .into_iter()
            .nth(index)
            .with_context(|| format!("{split} has {count} tweets; there is no {index}"))?;
        return Ok((split.to_string(), index, tweet));
    }
    for split in SPLITS {
        let path = split_path(data, split);
        if !path.exists() {
            continue;
        }
        let tweets = read_conll(&path)?;
        if let Some(index) = tweets
            .iter()
            .position(|t| t.image_id.as_deref() == Some(id))
        {
            let tweet = tweets.into_iter().nth(index).context("tweet vanished")?;
            return Ok((split.to_string(), index, tweet));
        }
    }
    bail!(
        "no tweet with image id '{id}' in {} (give an IMGID or SPLIT-INDEX such as test-0)",
        data.display()
    )
}

impl TweetArgs {
    /// The tweet: (split, index, tweet).
    pub(super) fn find(&self) -> anyhow::Result<(String, usize, crate::data::Tweet)> {
        find_tweet(&self.data, &self.id)
    }

    /// What `checkpoint` says of tweet `index` of `split` (spans, a_i), through the
    /// engine.
    pub(super) fn view(
        &self,
        checkpoint: &std::path::Path,
        split: &str,
        index: usize,
    ) -> anyhow::Result<crate::engine::TweetView> {
        let options = EngineOptions {
            device: device::select(self.device)?,
            images: self.images.clone(),
            first_tweet: index,
            ..EngineOptions::default()
        };
        let (_engine, events) = Engine::spawn(checkpoint, &self.data, split, options);
        loop {
            match events.recv_timeout(Duration::from_secs(600)) {
                Ok(Event::Tweet { view, .. }) if view.index == index => return Ok(*view),
                Ok(Event::Error { message, .. }) => bail!("{message}"),
                Ok(_) => {}
                Err(_) => bail!("the engine stopped before predicting tweet {index}"),
            }
        }
    }
}

pub(super) fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let (split, index, tweet) = args.tweet.find()?;
    let image = tweet
        .image_id
        .as_deref()
        .map_or("no image id".into(), |id| format!("image {id}"));
    println!("{split}-{index} · {image}");
    let resolver = ImageResolver::for_dataset(&args.tweet.data, args.tweet.images.as_deref());
    match resolver.load(tweet.image_id.as_deref()) {
        Ok((_, picture)) => {
            // The kitty and iTerm protocols are detected by querying the terminal; into
            // a file or a pipe that query would be written as text: half-blocks there.
            let terminal = std::io::stdout().is_terminal();
            let config = viuer::Config {
                width: Some(args.width),
                absolute_offset: false,
                use_kitty: terminal,
                use_iterm: terminal,
                ..viuer::Config::default()
            };
            viuer::print(&picture, &config).context("cannot print the image")?;
        }
        Err(why) => println!("({why}: the model runs text-only)"),
    }
    let gold = crate::data::spans::spans_from_tags(&tweet.tags);
    let predicted = match &args.checkpoint {
        Some(checkpoint) => {
            let view = args.tweet.view(checkpoint, &split, index)?;
            Some(view.predicted.iter().map(|p| p.span).collect::<Vec<Span>>())
        }
        None => None,
    };
    let predicted = predicted
        .as_deref()
        .map_or(Predicted::Absent, Predicted::Spans);
    for line in text_lines(&tweet.words, &gold, predicted, 100, None) {
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        println!("{}", text.trim_end());
    }
    Ok(())
}
