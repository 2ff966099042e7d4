//! The command line (DESIGN §2): argument parsing and the commands' front ends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::data::images::ImageResolver;
use crate::data::read_conll;
use crate::data::stats::dataset_stats;
use crate::data::tags::EntityType;
use crate::eval::score::{ErrorKind, ScoreReport, score_tweets};

#[derive(Debug, Parser)]
#[command(
    name = "promptmner",
    version,
    about = "Prompt-based multimodal NER (PromptMNER) and its research workbench"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score predictions against gold, entity by entity (conlleval's numbers).
    Score {
        /// Gold CoNLL file.
        #[arg(long)]
        gold: PathBuf,
        /// Predicted CoNLL file, token-aligned with the gold file.
        #[arg(long)]
        pred: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Tweets, tokens, entities and images of each split of a dataset directory.
    Stats {
        /// Dataset directory (train.txt, valid.txt, test.txt, images/).
        dir: PathBuf,
        /// Images directory, instead of DIR/images.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Score { gold, pred, json } => score(&gold, &pred, json),
        Command::Data {
            command: DataCommand::Stats { dir, images, json },
        } => {
            let resolver = ImageResolver::for_dataset(&dir, images.as_deref());
            let stats = dataset_stats(&dir, &resolver)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
            Ok(())
        }
    }
}

fn score(gold: &Path, pred: &Path, json: bool) -> anyhow::Result<()> {
    let gold_tweets = read_conll(gold)?;
    let pred_tweets = read_conll(pred)?;
    let report = score_tweets(&gold_tweets, &pred_tweets)
        .with_context(|| format!("{} does not align with {}", pred.display(), gold.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_report(&report));
    }
    Ok(())
}

/// The score report as a table: per type, micro and macro, then error counts.
pub fn format_report(report: &ScoreReport) -> String {
    let mut out = format!(
        "{} tweets, {} tokens; gold entities {}, predicted {}, correct {}; token accuracy {:.2}%\n\n",
        report.tweets,
        report.tokens,
        report.gold_entities,
        report.predicted_entities,
        report.micro.counts.tp,
        report.token_accuracy
    );
    out += &format!(
        "{:<8}{:>7}{:>7}{:>7}{:>11}{:>9}{:>9}\n",
        "type", "tp", "fp", "fn", "precision", "recall", "F1"
    );
    let rows = EntityType::ALL
        .iter()
        .map(|t| (t.as_str(), &report.per_type[t]))
        .chain(std::iter::once(("micro", &report.micro)));
    for (name, s) in rows {
        out += &format!(
            "{:<8}{:>7}{:>7}{:>7}{:>11.2}{:>9.2}{:>9.2}\n",
            name, s.counts.tp, s.counts.fp, s.counts.fn_, s.prf.precision, s.prf.recall, s.prf.f1
        );
    }
    out += &format!(
        "{:<8}{:>21}{:>11.2}{:>9.2}{:>9.2}\n\nerrors:",
        "macro", "", report.macro_avg.precision, report.macro_avg.recall, report.macro_avg.f1
    );
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| format!(" {} {}", k.as_str(), report.errors.get(*k)))
        .collect();
    out += &errors.join(",");
    out.push('\n');
    out
}
