//! `promptmner bench encode|live`: runs the library's measurements and prints them
//! (beside PyTorch's, with `--torch`).

use std::path::PathBuf;

use crate::bench::{self, AgreeFigures, EncodeFigures, LiveFigures, LiveSetup, OrtFigures};

use super::Bars;
use crate::model::device::{self, DeviceChoice, Precision};

/// What `promptmner bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// Text encoding (MiniLM, bert-base shapes) and CLIP ViT-B/32 towers.
    Encode,
    /// The engine's edit loop at base size.
    Live,
    /// The engine on --device against the engine on the CPU (a checkpoint, default the
    /// demo's): similarities and span probabilities after an edit and a count change.
    Agree,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    pub kind: BenchKind,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also run ../shared/anchors/bench_infer.py with this Python in the same sitting
    /// and print each ratio (encode).
    #[arg(long)]
    pub torch: Option<PathBuf>,
    /// With --torch: also run ../shared/anchors/bench_ort.py (ONNX Runtime's fused fp32
    /// and PyTorch's bfloat16 autocast) in the same sitting and print those ratios.
    #[arg(long, requires = "torch")]
    pub ort: bool,
    /// Encode: the text rows over the first 640 tweets of the test split, as the
    /// anchors' `--quick` (passed on to bench_ort.py; bench_infer.py has none, so with
    /// --torch only the ONNX Runtime anchors run, and --ort is needed).
    #[arg(long)]
    pub quick: bool,
    /// The shared directory (models, data, anchors).
    #[arg(long, default_value = "../shared", env = "PROMPTMNER_SHARED")]
    pub shared: PathBuf,
    /// Working directory of the live benchmark (backbones, data, caches; reused).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Empty the live benchmark's caches first (a cold start).
    #[arg(long)]
    pub cold: bool,
    /// Live: run on this trained checkpoint (with --data) instead of generated
    /// base-size backbones.
    #[arg(long, requires = "data")]
    pub checkpoint: Option<PathBuf>,
    /// Live: the dataset of --checkpoint (its test split).
    #[arg(long, requires = "checkpoint")]
    pub data: Option<PathBuf>,
    /// Where the models run (the CPU's fast paths are taken only on the CPU).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The products' precision (encode, live): bf16 where the CPU has AVX512_BF16
    /// (beside PyTorch's bf16 autocast with --ort), else fp32.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

pub(super) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        BenchKind::Encode => encode(args),
        BenchKind::Live => live(args),
        BenchKind::Agree => agree(args),
    }
}

fn agree(args: &BenchArgs) -> anyhow::Result<()> {
    let demo = crate::data::demo::embedded_dir();
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| demo.join("../../checkpoints/demo"));
    let data = args.data.clone().unwrap_or(demo);
    let device = device::select(args.device)?;
    let figures: AgreeFigures = bench::agree(&checkpoint, &data, &device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    println!(
        "{} against the CPU, tweet {}:",
        figures.device, figures.tweet
    );
    let mut table =
        crate::util::listing(&["step", "prompts", "similarity Δ", "probability Δ", "spans"]);
    for step in &figures.steps {
        table.add_row(vec![
            step.step.to_string(),
            step.prompts.to_string(),
            format!("{:.2e}", step.similarity_max_diff),
            format!("{:.2e}", step.probability_max_diff),
            if step.same_spans { "equal" } else { "DIFFER" }.to_string(),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(())
}

fn encode(args: &BenchArgs) -> anyhow::Result<()> {
    if args.quick && args.torch.is_some() && !args.ort {
        anyhow::bail!(
            "--quick with --torch compares with bench_ort.py only (bench_infer.py has no quick mode): add --ort"
        );
    }
    let tweets = args.quick.then_some(bench::QUICK_TWEETS);
    let ours = bench::encode(
        &args.shared,
        &device::select(args.device)?,
        tweets,
        args.precision,
        &Bars::default(),
    )?;
    let torch = match (&args.torch, args.quick) {
        (Some(python), false) => Some(bench::torch_encode(python, &args.shared)?),
        _ => None,
    };
    let ort = match (&args.torch, args.ort) {
        (Some(python), true) => Some(bench::ort_encode(python, &args.shared, args.quick)?),
        _ => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&ours)?;
        if let Some(torch) = &torch {
            value["torch"] = serde_json::to_value(torch)?;
            value["ratios"] = serde_json::to_value(ratios(&ours, torch))?;
        }
        if let Some(ort) = &ort {
            value["ort"] = serde_json::to_value(ort)?;
            value["ratios_ort"] = serde_json::to_value(OrtRatios::of(&ours, ort))?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{} ({})", ours.workload, ours.precision.name());
    let rows = [
        (
            "MiniLM text, tweets/s",
            ours.minilm_tweets_per_s,
            torch.as_ref().map(|t| t.minilm_tweets_per_s),
        ),
        (
            "bert-base text, tweets/s",
            ours.bert_base_tweets_per_s,
            torch.as_ref().map(|t| t.bert_base_tweets_per_s),
        ),
        (
            "CLIP B/32 vision, images/s",
            ours.clip_b32_images_per_s,
            torch.as_ref().map(|t| t.clip_b32_images_per_s),
        ),
        (
            "CLIP B/32 text, 100 prompts, ms",
            ours.clip_b32_100_prompts_ms,
            torch.as_ref().map(|t| t.clip_b32_100_prompts_ms),
        ),
        (
            "CLIP B/32 text, 1 prompt, ms",
            ours.clip_b32_1_prompt_ms,
            torch.as_ref().map(|t| t.clip_b32_1_prompt_ms),
        ),
    ];
    let mut table = crate::util::listing(&["", "ours", "pytorch", "ratio"]);
    for (name, ours, theirs) in rows {
        let mut cells = vec![name.to_string(), format!("{ours:.1}")];
        if let Some(t) = theirs {
            cells.extend([format!("{t:.1}"), format!("{:.2}×", ours / t)]);
        }
        table.add_row(cells);
    }
    println!("{}", table.trim_fmt());
    if torch.is_some() {
        println!("(ratio: ours / PyTorch; for the ms rows, below 1 is faster)");
    }
    if let Some(ort) = &ort {
        println!("{}", ort_table(&ours, ort).trim_fmt());
        println!(
            "(ratio: ours {} / theirs; ORT fp32 has its BERT fusions, bf16 changes results)",
            ours.precision.name()
        );
    }
    Ok(())
}

/// Our text encoding against ONNX Runtime's fused fp32 and PyTorch's bf16 autocast.
fn ort_table(ours: &EncodeFigures, ort: &OrtFigures) -> comfy_table::Table {
    let ratio = OrtRatios::of(ours, ort);
    let mut table = crate::util::listing(&[
        "tweets/s",
        "ours",
        "ORT fp32",
        "ratio",
        "PyTorch bf16",
        "ratio",
    ]);
    for (name, ours, ort_fp32, vs_ort, bf16, vs_bf16) in [
        (
            "MiniLM text",
            ours.minilm_tweets_per_s,
            ort.ort_minilm_tweets_per_s,
            ratio.minilm_vs_ort,
            ort.torch_bf16_minilm_tweets_per_s,
            ratio.minilm_vs_torch_bf16,
        ),
        (
            "bert-base text",
            ours.bert_base_tweets_per_s,
            ort.ort_bert_base_tweets_per_s,
            ratio.bert_base_vs_ort,
            ort.torch_bf16_bert_base_tweets_per_s,
            ratio.bert_base_vs_torch_bf16,
        ),
    ] {
        table.add_row(vec![
            name.to_string(),
            format!("{ours:.1}"),
            format!("{ort_fp32:.1}"),
            format!("{vs_ort:.2}×"),
            format!("{bf16:.1}"),
            format!("{vs_bf16:.2}×"),
        ]);
    }
    table
}

/// Ours over ONNX Runtime's and over PyTorch bf16's, text encoding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct OrtRatios {
    minilm_vs_ort: f64,
    bert_base_vs_ort: f64,
    minilm_vs_torch_bf16: f64,
    bert_base_vs_torch_bf16: f64,
}

impl OrtRatios {
    fn of(ours: &EncodeFigures, ort: &OrtFigures) -> Self {
        Self {
            minilm_vs_ort: ours.minilm_tweets_per_s / ort.ort_minilm_tweets_per_s,
            bert_base_vs_ort: ours.bert_base_tweets_per_s / ort.ort_bert_base_tweets_per_s,
            minilm_vs_torch_bf16: ours.minilm_tweets_per_s / ort.torch_bf16_minilm_tweets_per_s,
            bert_base_vs_torch_bf16: ours.bert_base_tweets_per_s
                / ort.torch_bf16_bert_base_tweets_per_s,
        }
    }
}

/// Ours over PyTorch's, figure by figure.
fn ratios(ours: &EncodeFigures, torch: &EncodeFigures) -> EncodeFigures {
    EncodeFigures {
        workload: "ours / PyTorch".into(),
        precision: ours.precision,
        minilm_tweets_per_s: ours.minilm_tweets_per_s / torch.minilm_tweets_per_s,
        bert_base_tweets_per_s: ours.bert_base_tweets_per_s / torch.bert_base_tweets_per_s,
        clip_b32_images_per_s: ours.clip_b32_images_per_s / torch.clip_b32_images_per_s,
        clip_b32_100_prompts_ms: ours.clip_b32_100_prompts_ms / torch.clip_b32_100_prompts_ms,
        clip_b32_1_prompt_ms: ours.clip_b32_1_prompt_ms / torch.clip_b32_1_prompt_ms,
    }
}

fn live(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::stages::cache_root().join("bench-live"));
    let setup = match (&args.checkpoint, &args.data) {
        (Some(checkpoint), Some(data)) => LiveSetup::Checkpoint { checkpoint, data },
        _ => LiveSetup::Generated {
            shared: args.shared.is_dir().then_some(args.shared.as_path()),
        },
    };
    let device = device::select(args.device)?;
    let figures: LiveFigures = bench::live(
        setup,
        &dir,
        args.cold,
        &device,
        args.precision,
        &Bars::default(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    let f = &figures;
    println!(
        "split: {} ({} tweets), {} prompts, {}",
        f.split,
        f.split_tweets,
        f.prompts,
        f.precision.name()
    );
    println!(
        "start ({}): {:.1} s to a fully scored split, {:.1} tweets/s",
        if f.cold_start {
            "cold caches"
        } else {
            "warm caches"
        },
        f.start_to_scored_s,
        f.cold_tweets_per_s
    );
    println!(
        "one-word edit → current tweet: p50 {:.1} ms, p95 {:.1} ms ({} edits)",
        f.edit_to_tweet_ms.p50, f.edit_to_tweet_ms.p95, f.edits
    );
    println!(
        "one-word edit → whole split rescored: median {:.2} s, max {:.2} s",
        f.edit_to_split_s, f.edit_to_split_max_s
    );
    println!(
        "continuous prompts {} → {}: tweet {:.1} ms, split {:.2} s",
        f.continuous_from, f.continuous_to, f.continuous_to_tweet_ms, f.continuous_to_split_s
    );
    println!("peak resident memory: {:.0} MB", f.peak_rss_mb);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ort_table_gives_ours_over_each_anchor() {
        let ours = EncodeFigures {
            workload: String::new(),
            precision: Precision::Fp32,
            minilm_tweets_per_s: 150.0,
            bert_base_tweets_per_s: 22.0,
            clip_b32_images_per_s: 0.0,
            clip_b32_100_prompts_ms: 0.0,
            clip_b32_1_prompt_ms: 0.0,
        };
        let ort = OrtFigures {
            ort_minilm_tweets_per_s: 120.0,
            ort_bert_base_tweets_per_s: 20.0,
            torch_bf16_minilm_tweets_per_s: 300.0,
            torch_bf16_bert_base_tweets_per_s: 44.0,
            ort_minilm_int8_tweets_per_s: None,
        };
        assert_eq!(
            OrtRatios::of(&ours, &ort),
            OrtRatios {
                minilm_vs_ort: 1.25,
                bert_base_vs_ort: 1.1,
                minilm_vs_torch_bf16: 0.5,
                bert_base_vs_torch_bf16: 0.5,
            }
        );
        let text = ort_table(&ours, &ort).trim_fmt();
        let minilm = text.lines().find(|l| l.starts_with("MiniLM")).unwrap();
        let cells: Vec<&str> = minilm.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "MiniLM", "text", "150.0", "120.0", "1.25×", "300.0", "0.50×"
            ]
        );
    }
}
