//! `promptmner figure`: a case-study figure of one tweet (SVG or PNG).

use std::path::PathBuf;

use anyhow::bail;

use crate::data::images::ImageResolver;
use crate::eval::figure::{self, TOP_PROMPTS};

use super::workbench::TweetArgs;

#[derive(Debug, clap::Args)]
pub struct FigureArgs {
    /// Checkpoint directory (A).
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub tweet: TweetArgs,
    /// A second checkpoint (B): its predictions in a row of their own.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// FILE.svg or FILE.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Prompts drawn as bars (A's, highest a_i first).
    #[arg(long, default_value_t = TOP_PROMPTS)]
    pub prompts: usize,
    /// Pixels per SVG unit of a PNG (2 for print).
    #[arg(long, default_value_t = 2.0)]
    pub scale: f32,
}

pub(super) fn run(args: &FigureArgs) -> anyhow::Result<()> {
    // A wrong extension is told before the model loads.
    figure::FigureFormat::of(&args.out)?;
    if !(args.scale > 0.0 && args.scale <= 8.0) {
        bail!("--scale {}: give a scale in (0, 8]", args.scale);
    }
    let (split, index, tweet) = args.tweet.find()?;
    let a = args.tweet.view(&args.checkpoint, &split, index)?;
    let b = match &args.compare {
        Some(other) => Some(args.tweet.view(other, &split, index)?),
        None => None,
    };
    let name = |which: &str, path: &std::path::Path| {
        format!("{which}: {}", crate::util::folder_name(path))
    };
    let mut views = vec![(name("A", &args.checkpoint), &a)];
    if let (Some(b), Some(other)) = (&b, &args.compare) {
        views.push((name("B", other), b));
    }
    let resolver = ImageResolver::for_dataset(&args.tweet.data, args.tweet.images.as_deref());
    let picture = resolver
        .load(tweet.image_id.as_deref())
        .map(|(_, picture)| picture)
        .map_err(|why| why.to_string());
    let image = tweet
        .image_id
        .as_deref()
        .map_or("no image id".into(), |id| format!("image {id}"));
    let case = crate::engine::case_study(
        format!("{split}-{index} · {image}"),
        &views,
        picture.as_ref().map_err(Clone::clone),
        args.prompts,
    )?;
    figure::write(&case, &args.out, args.scale)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
