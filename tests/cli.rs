//! The command line, run as a user runs it.

mod common;

use common::promptmner;
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run_ok(args: &[&str]) -> String {
    let out = promptmner().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_err(args: &[&str]) -> String {
    let out = promptmner().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn score_equals_conlleval_and_seqeval_on_edge_case_fixture() {
    let dir = fixture("scoring");
    let gold = dir.join("gold.txt");
    let pred = dir.join("pred.txt");
    let report: Value = serde_json::from_str(&run_ok(&[
        "score",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let num = |v: &Value| v.as_f64().unwrap();
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-9, "{what}: {a} vs {b}");

    let conll = &expected["conlleval"];
    assert_eq!(report["micro"]["tp"], conll["correct"]);
    assert_eq!(report["gold_entities"], conll["found_gold"]);
    assert_eq!(report["predicted_entities"], conll["found_pred"]);
    close(
        num(&report["token_accuracy"]),
        num(&conll["accuracy"]),
        "accuracy",
    );
    for (kind, want) in conll["per_type"].as_object().unwrap() {
        let got = &report["per_type"][kind];
        let tp = got["tp"].as_u64().unwrap();
        assert_eq!(tp, want["correct"].as_u64().unwrap(), "{kind}");
        assert_eq!(
            tp + got["fn"].as_u64().unwrap(),
            want["gold"].as_u64().unwrap(),
            "{kind}"
        );
        assert_eq!(
            tp + got["fp"].as_u64().unwrap(),
            want["pred"].as_u64().unwrap(),
            "{kind}"
        );
    }

    let seq = &expected["seqeval"];
    for key in ["precision", "recall", "f1"] {
        close(num(&report["micro"][key]), num(&seq[key]), key);
    }
    for (key, seq_key) in [
        ("precision", "precision"),
        ("recall", "recall"),
        ("f1", "f1-score"),
    ] {
        close(
            num(&report["macro"][key]),
            num(&seq["macro"][seq_key]),
            "macro",
        );
        for (kind, want) in seq["per_type"].as_object().unwrap() {
            close(
                num(&report["per_type"][kind][key]),
                num(&want[seq_key]),
                kind,
            );
        }
    }
    // Every error kind is counted in the JSON.
    for kind in [
        "wrong_type",
        "wrong_boundary",
        "wrong_boundary_and_type",
        "spurious",
        "missed",
    ] {
        assert!(report["errors"][kind].as_u64().unwrap() > 0, "{kind}");
    }
}

#[test]
fn score_prints_a_table() {
    let dir = fixture("scoring");
    let gold = dir.join("gold.txt");
    let text = run_ok(&[
        "score",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        gold.to_str().unwrap(),
    ]);
    assert!(text.contains("micro"), "{text}");
    assert!(text.contains("100.00"), "{text}");
    let args = [
        "score",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        gold.to_str().unwrap(),
    ];
    let latex = run_ok(&[&args[..], &["--format", "latex"]].concat());
    insta::assert_snapshot!(latex);
    common::compiles_as_latex(&latex);
}

#[test]
fn score_rejects_misaligned_predictions_naming_the_tweet() {
    let dir = tempfile::tempdir().unwrap();
    let gold = dir.path().join("gold.txt");
    let pred = dir.path().join("pred.txt");
    std::fs::write(&gold, "IMGID:1\na\tO\n\nIMGID:2\nb\tB-PER\nc\tO\n").unwrap();
    std::fs::write(&pred, "IMGID:1\na\tO\n\nIMGID:2\nb\tB-PER\nd\tO\n").unwrap();
    let err = run_err(&[
        "score",
        "--gold",
        gold.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
    ]);
    assert!(err.contains("tweet 2"), "{err}");
    assert!(
        err.contains("token 2 is 'c' in gold, 'd' in prediction"),
        "{err}"
    );
}

#[test]
fn malformed_files_are_one_clear_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "IMGID:1\na\tO\nb\tB-PERSON\n").unwrap();
    let err = run_err(&[
        "score",
        "--gold",
        bad.to_str().unwrap(),
        "--pred",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.txt:3: label 'B-PERSON'"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let missing = dir.path().join("nope.txt");
    let err = run_err(&[
        "score",
        "--gold",
        missing.to_str().unwrap(),
        "--pred",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("nope.txt"), "{err}");
}

#[test]
fn data_stats_reports_every_split_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "valid", "test"] {
        std::fs::write(
            dir.path().join(format!("{split}.txt")),
            "IMGID:1\nGeorge\tB-PER\nZimmerman\tI-PER\n\nIMGID:2\nParis\tB-LOC\n",
        )
        .unwrap();
    }
    let images = dir.path().join("pics");
    std::fs::create_dir(&images).unwrap();
    image::RgbImage::new(4, 4)
        .save(images.join("1.png"))
        .unwrap();
    let d = dir.path().to_str().unwrap();
    let text = run_ok(&["data", "stats", d]);
    assert!(text.contains("images missing"), "{text}");
    let json: Value = serde_json::from_str(&run_ok(&[
        "data",
        "stats",
        d,
        "--images",
        images.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let splits = json["splits"].as_array().unwrap();
    assert_eq!(splits.len(), 3);
    assert_eq!(splits[2]["split"], "test");
    assert_eq!(splits[0]["tweets"], 2);
    assert_eq!(splits[0]["entities"]["PER"], 1);
    assert_eq!(splits[0]["longest_entity"], 2);
    assert_eq!(splits[0]["images_found"], 1);
    assert_eq!(splits[0]["images_missing"], 1);
}

#[test]
fn data_stats_on_twitter2015_counts_its_splits() {
    let Some(dir) = common::twitter2015() else {
        return;
    };
    let json: Value =
        serde_json::from_str(&run_ok(&["data", "stats", dir.to_str().unwrap(), "--json"])).unwrap();
    let tweets: Vec<u64> = json["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tweets"].as_u64().unwrap())
        .collect();
    assert_eq!(tweets, [4000, 1000, 3257]);
    // Entity counts agree with counting B- tags in the files.
    for split in json["splits"].as_array().unwrap() {
        let name = split["split"].as_str().unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{name}.txt"))).unwrap();
        for kind in ["PER", "LOC", "ORG", "OTHER"] {
            let b_tags = text
                .lines()
                .filter(|l| l.ends_with(&format!("\tB-{kind}")))
                .count() as u64;
            assert_eq!(
                split["entities"][kind].as_u64().unwrap(),
                b_tags,
                "{name} {kind}"
            );
        }
    }
}

#[test]
fn models_fetch_tiny_then_list_shows_it_ready() {
    let store = tempfile::tempdir().unwrap();
    // Port 1 of the loopback refuses: no test reaches the public hub.
    let run = |args: &[&str]| {
        promptmner()
            .args(args)
            .env("PROMPTMNER_MODELS", store.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:1")
            .env("HF_HOME", store.path().join("hf"))
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .unwrap()
    };
    let out = run(&["models", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("needs `promptmner models fetch tiny`"));
    assert!(run(&["models", "fetch", "tiny"]).status.success());
    let text = String::from_utf8(run(&["models", "list"]).stdout).unwrap();
    assert!(
        text.contains("tiny-bert")
            && text.contains("preset tiny    text tiny-bert, clip tiny-clip: ready"),
        "{text}"
    );
    // A download that cannot happen (the hub cannot be reached) fails with a sentence
    // saying which files to place where, and leaves nothing behind.
    let out = run(&["models", "fetch", "promptmner-tests/no-such-model"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("place config.json, model.safetensors and tokenizer.json"),
        "{err}"
    );
    assert!(err.contains("promptmner-tests/no-such-model"), "{err}");
    assert!(!store.path().join("no-such-model").exists());
    let out = run(&["models", "fetch", "no-such-model"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model"));
}

fn demo_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

#[test]
fn without_a_terminal_the_main_job_prints_the_demo_evaluation_and_says_why() {
    let out = run_ok(&[]);
    assert!(out.contains("The workbench needs a terminal"), "{out}");
    assert!(out.contains("300 tweets"), "{out}");
    let err = run_err(&[
        "tui",
        "--data",
        "data/demo",
        "--checkpoint",
        "checkpoints/demo",
    ]);
    assert!(err.contains("needs a terminal"), "{err}");
}

#[test]
fn show_prints_a_tweet_with_its_image_and_both_span_lines() {
    let data = demo_dir();
    let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/demo");
    let out = run_ok(&[
        "show",
        "--data",
        data.to_str().unwrap(),
        "--id",
        "test-3",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--width",
        "12",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("test-3 · image "), "{out}");
    assert!(out.contains('▄'), "the image as half-blocks:\n{out}");
    let words = lines.iter().position(|l| l.contains("Nova")).expect(&out);
    assert!(lines[words + 1].starts_with("gold"), "{out}");
    assert!(lines[words + 2].starts_with("pred"), "{out}");
    // Found by image id too, without a checkpoint: no prediction line.
    let image_id = lines[0].rsplit(' ').next().unwrap();
    let by_id = run_ok(&["show", "--data", data.to_str().unwrap(), "--id", image_id]);
    assert!(by_id.starts_with("test-3 · "), "{by_id}");
    assert!(
        by_id.contains("\ngold") && !by_id.contains("\npred"),
        "{by_id}"
    );
    let err = run_err(&["show", "--data", data.to_str().unwrap(), "--id", "nope"]);
    assert!(err.contains("no tweet with image id 'nope'"), "{err}");
}

#[test]
fn probe_images_finds_that_the_image_ambiguous_tweets_depend_on_the_image_most() {
    let data = demo_dir();
    let checkpoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/demo");
    let out = run_ok(&[
        "probe-images",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    let probe: Value = serde_json::from_str(&out).unwrap();
    let share = |key: &str| probe[key]["share"].as_f64().unwrap();
    assert!(
        share("ambiguous") > 2.0 * share("unambiguous"),
        "{}",
        probe["ambiguous"]
    );
    assert!(share("ambiguous") > share("overall"));
    let tweets = probe["tweets"].as_array().unwrap();
    assert_eq!(tweets.len(), 300);
    // A tweet without an image cannot depend on one.
    for tweet in tweets.iter().filter(|t| t["has_image"] == false) {
        assert_eq!(tweet["changes_without_image"], false, "{tweet}");
    }
    let per_type = probe["per_type"].as_object().unwrap();
    assert_eq!(per_type.len(), 4);
}

/// Entities of a CoNLL file, parsed here (BIO, an I- that does not continue starts one),
/// independently of the library: per tweet, (start, end, type).
fn conll_entities(path: &Path) -> Vec<Vec<(usize, usize, String)>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut tweets = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let tags: Vec<&str> = block
            .lines()
            .filter(|l| !l.starts_with("IMGID:") && !l.trim().is_empty())
            .map(|l| l.split('\t').nth(1).unwrap_or("O"))
            .collect();
        let mut spans = Vec::new();
        let mut open: Option<(usize, String)> = None;
        for (i, tag) in tags.iter().chain(std::iter::once(&"O")).enumerate() {
            let (prefix, kind) = tag.split_once('-').unwrap_or((tag, ""));
            let continues = prefix == "I" && open.as_ref().is_some_and(|(_, k)| k == kind);
            if !continues {
                if let Some((start, k)) = open.take() {
                    spans.push((start, i, k));
                }
                if prefix == "B" || prefix == "I" {
                    open = Some((i, kind.to_string()));
                }
            }
        }
        tweets.push(spans);
    }
    tweets
}

#[test]
fn eval_compare_counts_equal_a_count_from_the_two_prediction_files() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let b = scratch.path().join("b");
    let out = promptmner()
        .current_dir(repo)
        .args([
            "train",
            "--config",
            "configs/demo.toml",
            "--set",
            "epochs=1",
        ])
        .args(["--set", "max_train_examples=128", "--out"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (pred_a, pred_b) = (scratch.path().join("a.txt"), scratch.path().join("b.txt"));
    let data = demo_dir();
    let data = data.to_str().unwrap();
    let a = repo.join("checkpoints/demo");
    for (checkpoint, pred) in [(&a, &pred_a), (&b, &pred_b)] {
        run_ok(&[
            "eval",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--data",
            data,
            "--out",
            pred.to_str().unwrap(),
        ]);
    }
    let json: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--checkpoint",
        a.to_str().unwrap(),
        "--compare",
        b.to_str().unwrap(),
        "--data",
        data,
        "--json",
    ]))
    .unwrap();
    let gold = conll_entities(&demo_dir().join("test.txt"));
    let (ea, eb) = (conll_entities(&pred_a), conll_entities(&pred_b));
    let (mut a_right, mut b_right, mut tweets) = (0, 0, 0);
    for ((g, a), b) in gold.iter().zip(&ea).zip(&eb) {
        let only_a: Vec<_> = a.iter().filter(|s| !b.contains(s)).collect();
        let only_b: Vec<_> = b.iter().filter(|s| !a.contains(s)).collect();
        tweets += usize::from(!only_a.is_empty() || !only_b.is_empty());
        for s in only_a {
            if g.contains(s) {
                a_right += 1
            } else {
                b_right += 1
            }
        }
        for s in only_b {
            if g.contains(s) {
                b_right += 1
            } else {
                a_right += 1
            }
        }
    }
    let d = &json["disagreements"];
    assert!(
        a_right + b_right > 0,
        "the two models should disagree somewhere"
    );
    assert_eq!(d["overall"]["a_right"], a_right, "{d}");
    assert_eq!(d["overall"]["b_right"], b_right, "{d}");
    assert_eq!(d["tweets"], tweets);
    let f1 = |k: &str| json[k]["scores"]["micro"]["f1"].as_f64().unwrap();
    assert!((json["delta_f1"].as_f64().unwrap() - (f1("b") - f1("a"))).abs() < 1e-9);
    // The paired tests: an interval around the delta, a p-value, seeded.
    let s = &json["significance"];
    let (low, high) = (
        s["interval"][0].as_f64().unwrap(),
        s["interval"][1].as_f64().unwrap(),
    );
    let delta = s["delta_f1"].as_f64().unwrap();
    assert!(low <= delta && delta <= high, "{s}");
    let p = s["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0 && s["resamples"] == 1000, "{s}");

    // A checkpoint against itself: ΔF1 0, interval [0, 0], p = 1, in the text report.
    let itself = run_ok(&[
        "eval",
        "--checkpoint",
        a.to_str().unwrap(),
        "--compare",
        a.to_str().unwrap(),
        "--data",
        data,
        "--resamples",
        "200",
    ]);
    assert!(
        itself.contains("ΔF1 (B − A): +0.00, 95% interval [+0.00, +0.00], p = 1.000"),
        "{itself}"
    );
    assert!(itself.contains("200 resamples each"), "{itself}");
    // The comparison as a table for a paper.
    let latex = run_ok(&[
        "eval",
        "--checkpoint",
        a.to_str().unwrap(),
        "--compare",
        b.to_str().unwrap(),
        "--data",
        data,
        "--format",
        "latex",
    ]);
    assert!(
        latex.contains("\\toprule") && latex.contains("A: demo"),
        "{latex}"
    );
    assert!(latex.contains("paired-bootstrap interval"), "{latex}");
    common::compiles_as_latex(&latex);
}

#[test]
fn errors_say_each_cause_once_and_a_byte_order_mark_is_accepted() {
    let err = run_err(&[
        "score",
        "--gold",
        "/nonexistent/gold.txt",
        "--pred",
        "/nonexistent/p.txt",
    ]);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/gold.txt"), "{err}");
    // A split saved with a byte-order mark reads like one without.
    let dir = tempfile::tempdir().unwrap();
    let gold = std::fs::read_to_string(fixture("scoring/gold.txt")).unwrap();
    let with_bom = dir.path().join("gold.txt");
    std::fs::write(&with_bom, format!("\u{feff}{gold}")).unwrap();
    let plain = run_ok(&[
        "score",
        "--gold",
        fixture("scoring/gold.txt").to_str().unwrap(),
        "--pred",
        fixture("scoring/gold.txt").to_str().unwrap(),
        "--json",
    ]);
    let bom = run_ok(&[
        "score",
        "--gold",
        with_bom.to_str().unwrap(),
        "--pred",
        fixture("scoring/gold.txt").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(plain, bom);
}

#[test]
fn mismatched_artefacts_are_one_clear_error_naming_the_file_and_what_to_do() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    // Weights of another config.
    let other = demo_checkpoint_copy(scratch.path());
    let config = std::fs::read_to_string(other.join("config.toml")).unwrap();
    let eval_with = |from: &str, to: &str| {
        std::fs::write(other.join("config.toml"), config.replace(from, to)).unwrap();
        run_err(&[
            "eval",
            "--checkpoint",
            other.to_str().unwrap(),
            "--data",
            demo_dir().to_str().unwrap(),
        ])
    };
    let err = eval_with("span_hidden = 64", "span_hidden = 32");
    assert!(
        err.contains("model.safetensors") && err.contains("another config"),
        "{err}"
    );
    // Settings that do not fit the text encoder, or fit nothing.
    let err = eval_with("fusion_heads = 4", "fusion_heads = 3");
    assert!(
        err.contains("model.fusion_heads = 3") && err.contains("choose a divisor"),
        "{err}"
    );
    let err = eval_with("span_hidden = 64", "span_hidden = 6400000000");
    assert!(
        err.contains("config.toml: model.span_hidden = 6400000000 is out of range"),
        "{err}"
    );
    // A dataset with a label the model does not know.
    let bad = scratch.path().join("data");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("test.txt"), "IMGID:1\nParis\tB-FOO\n\n").unwrap();
    let err = run_err(&[
        "eval",
        "--checkpoint",
        repo.join("checkpoints/demo").to_str().unwrap(),
        "--data",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("test.txt:2") && err.contains("FOO"), "{err}");
    // A vocabulary with a type no checkpoint knows.
    let vocabulary = scratch.path().join("v.toml");
    std::fs::write(
        &vocabulary,
        "template = \"an image of {}\"\n[FOO]\nlabels = [\"thing\"]\n",
    )
    .unwrap();
    let err = run_err(&[
        "runs",
        "--runs",
        scratch.path().join("runs").to_str().unwrap(),
        "submit",
        "--from",
        repo.join("checkpoints/demo").to_str().unwrap(),
        "--variant",
        "current-vocabulary",
        "--prompts",
        vocabulary.to_str().unwrap(),
    ]);
    assert!(err.contains("v.toml") && err.contains("'FOO'"), "{err}");
}

#[test]
fn a_tweet_of_ten_thousand_words_is_scored_within_a_bounded_memory() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let mut text = String::from("IMGID:1\n");
    for i in 0..10_000 {
        text.push_str(&format!("word{i}\tO\n"));
    }
    text.push_str("\nIMGID:2\nParis\tB-LOC\n\n");
    std::fs::write(scratch.path().join("test.txt"), text).unwrap();
    let status = promptmner()
        .args(["eval", "--checkpoint"])
        .arg(repo.join("checkpoints/demo"))
        .arg("--data")
        .arg(scratch.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Peak resident memory of the finished children of this test process, in KiB.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_mb = usage.ru_maxrss / 1024;
    assert!(
        peak_mb < 1024,
        "peak RSS {peak_mb} MB (the cut words must not be computed)"
    );
}

/// A copy of the demo checkpoint in `dir` (backbone folders linked).
fn demo_checkpoint_copy(dir: &Path) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = dir.join("ck");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(repo.join("checkpoints/demo")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        } else {
            std::os::unix::fs::symlink(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    copy
}

#[test]
fn eval_uses_the_continuous_count_of_the_checkpoints_vocabulary_and_refuses_more() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = demo_checkpoint_copy(scratch.path());
    let prompts = std::fs::read_to_string(copy.join("prompts.toml")).unwrap();
    let eval_json = |count: &str| {
        let edited = prompts.replace("continuous = 8", count);
        std::fs::write(copy.join("prompts.toml"), edited).unwrap();
        promptmner()
            .args(["eval", "--json", "--checkpoint"])
            .arg(&copy)
            .arg("--data")
            .arg(demo_dir())
            .output()
            .unwrap()
    };
    let parsed = |out: std::process::Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut trained = parsed(eval_json("continuous = 8"));
    let mut none = parsed(eval_json("continuous = 0"));
    assert_eq!(trained["inputs"]["continuous_prompts"], 8);
    assert_eq!(none["inputs"]["continuous_prompts"], 0);
    trained.as_object_mut().unwrap().remove("inputs");
    none.as_object_mut().unwrap().remove("inputs");
    assert_ne!(trained, none, "0 continuous prompts score differently");
    for more in ["continuous = 9", "continuous = 999999999999"] {
        let out = eval_json(more);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{more}");
        assert!(
            err.contains("prompts.toml") && err.contains("more needs a retrain"),
            "{err}"
        );
    }
}

#[test]
fn eval_refuses_to_write_its_predictions_over_its_gold_split() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let gold = std::fs::read(demo_dir().join("test.txt")).unwrap();
    std::fs::write(data.join("test.txt"), &gold).unwrap();
    let sneaky = format!("{}/../data/test.txt", data.display());
    let err = run_err(&[
        "eval",
        "--checkpoint",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("checkpoints/demo")
            .to_str()
            .unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        &sneaky,
    ]);
    assert!(err.contains("an input of this evaluation"), "{err}");
    assert_eq!(
        std::fs::read(data.join("test.txt")).unwrap(),
        gold,
        "untouched"
    );
}

#[test]
fn eval_warns_about_missing_images_and_thin_vocabularies_on_stderr_and_in_json() {
    let scratch = tempfile::tempdir().unwrap();
    let copy = demo_checkpoint_copy(scratch.path());
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("test.txt"),
        "IMGID:nowhere\nParis\tB-LOC\n\nIMGID:../../etc/passwd\nRome\tB-LOC\n\n",
    )
    .unwrap();
    let prompts = std::fs::read_to_string(copy.join("prompts.toml")).unwrap();
    let without_org = prompts.split("[ORG]").next().unwrap().to_string()
        + &prompts
            .split("[ORG]")
            .nth(1)
            .unwrap()
            .split_once("\n[")
            .map_or(String::new(), |(_, rest)| format!("[{rest}"));
    std::fs::write(copy.join("prompts.toml"), &without_org).unwrap();
    let out = promptmner()
        .args(["eval", "--json", "--checkpoint"])
        .arg(&copy)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: 1 of 2 tweets name an image that is not in"),
        "{err}"
    );
    assert!(
        err.contains("warning: 1 IMGIDs are not plain file names"),
        "{err}"
    );
    assert!(err.contains("no [ORG] section"), "{err}\n{without_org}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["inputs"]["images"]["missing"], 1);
    assert_eq!(report["inputs"]["images"]["unsafe_id"], 1);
    assert_eq!(report["inputs"]["warnings"].as_array().unwrap().len(), 3);
}

#[test]
fn show_into_a_file_writes_no_terminal_queries() {
    let out = run_ok(&[
        "show",
        "--data",
        demo_dir().to_str().unwrap(),
        "--id",
        "test-3",
        "--width",
        "8",
    ]);
    for query in ["\x1b_G", "\x1b[c", "\x1b]1337"] {
        assert!(!out.contains(query), "{query:?} in {out:?}");
    }
    assert!(out.contains('▄'), "half-blocks:\n{out}");
}

#[test]
fn the_tests_commands_keep_their_caches_out_of_the_home_folder() {
    let home = common::test_home();
    let _ = std::fs::remove_dir_all(home.join(".cache/promptmner/image-embeddings"));
    run_ok(&[
        "eval",
        "--checkpoint",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("checkpoints/demo")
            .to_str()
            .unwrap(),
        "--data",
        demo_dir().to_str().unwrap(),
    ]);
    assert!(
        home.join(".cache/promptmner/image-embeddings").is_dir(),
        "eval's image cache is in the tests' home"
    );
}

#[test]
fn eval_in_bf16_scores_the_demo_within_a_fifth_of_a_point_of_fp32() {
    let eval_json = |precision: &str| -> Value {
        let out = run_ok(&[
            "eval",
            "--json",
            "--checkpoint",
            demo_dir().join("../../checkpoints/demo").to_str().unwrap(),
            "--data",
            demo_dir().to_str().unwrap(),
            "--precision",
            precision,
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let (fp32, bf16) = (eval_json("fp32"), eval_json("bf16"));
    assert_eq!(fp32["inputs"]["precision"], "fp32");
    // bf16 runs where the CPU has AVX512_BF16; elsewhere the command says so and runs fp32.
    let ran = bf16["inputs"]["precision"].as_str().unwrap().to_string();
    let f1 = |v: &Value| v["micro"]["f1"].as_f64().unwrap();
    eprintln!(
        "demo test F1: fp32 {:.2}, {ran} {:.2}",
        f1(&fp32),
        f1(&bf16)
    );
    assert!((f1(&fp32) - f1(&bf16)).abs() <= 0.2, "{fp32} vs {bf16}");
}

#[test]
fn figure_writes_a_case_study_as_svg_or_png_and_refuses_another_format() {
    let scratch = tempfile::tempdir().unwrap();
    let figure = |out: &Path, extra: &[&str]| {
        promptmner()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "figure",
                "--checkpoint",
                "checkpoints/demo",
                "--data",
                "data/demo",
            ])
            .args(["--id", "test-82", "--device", "cpu", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    let svg_path = scratch.path().join("case/test-82.svg");
    let out = figure(&svg_path, &["--compare", "checkpoints/demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for text in [
        "test-82 · image 101582",
        "A: demo",
        "B: demo",
        "Golden",
        "Kael",
        "OTHER",
    ] {
        assert!(svg.contains(&format!("\n{text}\n</text>")), "{text}");
    }
    assert!(svg.contains("data:image/png;base64,"), "the tweet's image");
    let png_path = scratch.path().join("test-82.png");
    let out = figure(&png_path, &["--scale", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(&png_path).unwrap();
    assert_eq!(png.width(), 960, "the SVG's width at scale 1");
    let out = figure(&scratch.path().join("test-82.pdf"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a figure is FILE.svg or FILE.png"), "{err}");
}
