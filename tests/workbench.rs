//! The real binary in a real terminal (tmux), driven as a user would: keys in, the
//! screen read back, waiting for text rather than for fixed times.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use promptmner::prompts::Vocabulary;

/// A tmux session running one command; killed when dropped.
struct Tmux {
    session: String,
}

impl Tmux {
    /// None (after saying why) when tmux is not installed outside CI; CI must have it.
    fn start(name: &str, command: &str) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is missing on CI (.ci/run installs it with .ci/install-test-deps)"
            );
            eprintln!("skipped: tmux is not installed (.ci/install-test-deps installs it)");
            return None;
        }
        let session = format!("promptmner-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "120", "-y", "40"])
            .arg(command)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Some(Self { session })
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until `ready` holds for the screen; returns that screen.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "waited 120 s for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, |screen| screen.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shell line that runs the workbench with its caches and logs in `scratch`.
fn command_line(scratch: &Path, args: &str) -> String {
    format!(
        "cd '{}' && PROMPTMNER_CACHE='{}' PROMPTMNER_RUNS='{}' PROMPTMNER_IMAGE_PROTOCOL=halfblocks '{}' {args}; echo EXITED $?; sleep 600",
        repo().display(),
        scratch.join("cache").display(),
        scratch.join("runs").display(),
        env!("CARGO_BIN_EXE_promptmner"),
    )
}

/// The metrics panel's "all" row.
fn all_row(screen: &str) -> String {
    screen
        .lines()
        .find_map(|line| {
            line.split_once("│all ")
                .map(|(_, row)| row.trim().to_string())
        })
        .unwrap_or_default()
}

fn status_line(screen: &str) -> &str {
    screen.trim_end().lines().last().unwrap_or_default()
}

#[test]
fn a_user_browses_filters_edits_saves_and_quits() {
    let scratch = tempfile::tempdir().unwrap();
    let prompts: PathBuf = scratch.path().join("edited.toml");
    let frames = scratch.path().join("frames.json");
    let args = format!(
        "tui --data data/demo --checkpoint checkpoints/demo --prompts '{}' --frame-stats '{}'",
        prompts.display(),
        frames.display()
    );
    let Some(tmux) = Tmux::start("browse", &command_line(scratch.path(), &args)) else {
        return;
    };
    tmux.wait_for("the scored demo", |s| {
        s.contains("examples · all (300/300)") && status_line(s).contains(" idle ")
    });
    tmux.keys(&["j"]);
    tmux.wait_text("▶   1 ");
    tmux.keys(&["]"]);
    tmux.wait_text("examples · misclassified (");
    tmux.keys(&["["]);
    tmux.wait_text("examples · all (300/300)");
    tmux.keys(&["?"]);
    tmux.wait_text("this help");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the help to close", |s| !s.contains("this help"));
    tmux.keys(&["J"]);
    tmux.wait_text("no runs yet");
    tmux.keys(&["Escape"]);
    tmux.wait_text("examples · all (300/300)");

    // Tweet 1 has an image: its prompt panel lists every prompt.
    let before = tmux.wait_text("prompts (");
    let count = |s: &str| -> usize {
        let at = s.find("prompts (").unwrap() + "prompts (".len();
        s[at..].split(')').next().unwrap().parse().unwrap()
    };
    let prompts_before = count(&before);
    tmux.keys(&["e"]);
    tmux.wait_text("vocabulary");
    tmux.keys(&["j", "j", "a"]);
    tmux.wait_text("add a word to PER.labels");
    tmux.text("athlete");
    tmux.keys(&["Enter"]);
    let added = format!("prompts ({})", prompts_before + 1);
    tmux.wait_text(&added);
    let metrics_before =
        all_row(&tmux.wait_for("idle after the edit", |s| status_line(s).contains(" idle ")));

    // No continuous prompts: the split's scores move.
    for _ in 0..8 {
        tmux.keys(&["-"]);
    }
    let after = tmux.wait_for("the metrics to change", |s| {
        status_line(s).contains(" idle ")
            && all_row(s) != metrics_before
            && s.contains("0 of 8 trained")
    });
    assert_ne!(all_row(&after), metrics_before);

    tmux.keys(&["s"]);
    tmux.wait_text("saved ");
    let saved = Vocabulary::load(&prompts).unwrap();
    assert!(
        saved.types[&promptmner::data::EntityType::Per]
            .labels
            .contains(&"athlete".to_string())
    );
    assert_eq!(saved.continuous, 0);

    tmux.keys(&["q"]);
    tmux.wait_text("EXITED 0");
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&frames).unwrap()).unwrap();
    assert!(
        figures["while_engine_busy"]["frames"].as_u64().unwrap() > 0,
        "{figures}"
    );
}

#[test]
fn no_arguments_open_the_demo_and_quitting_with_edits_asks() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("bare", &command_line(scratch.path(), "")) else {
        return;
    };
    tmux.wait_text("examples · all (300/300)");
    tmux.keys(&["-"]);
    tmux.wait_text("[+]");
    tmux.keys(&["q"]);
    tmux.wait_text("unsaved edits");
    tmux.keys(&["n"]);
    tmux.wait_for("the question to close", |s| !s.contains("unsaved edits"));
    tmux.keys(&["q"]);
    tmux.wait_text("unsaved edits");
    tmux.keys(&["y"]);
    let screen = tmux.wait_text("EXITED 0");
    assert!(
        !screen.contains("examples ·"),
        "the terminal is restored:\n{screen}"
    );
}

#[test]
fn a_key_typed_as_soon_as_the_first_screen_shows_is_not_lost() {
    let scratch = tempfile::tempdir().unwrap();
    // The terminal is asked about its image protocols, as for a user: the query must
    // be over before the first screen, so that it cannot take the user's first key.
    let line =
        command_line(scratch.path(), "").replace("PROMPTMNER_IMAGE_PROTOCOL=halfblocks ", "");
    let Some(tmux) = Tmux::start("first-key", &line) else {
        return;
    };
    tmux.wait_for("the examples list", |s| {
        s.contains("examples · all (300/300)")
    });
    tmux.keys(&["j"]);
    tmux.wait_text("▶   1 ");
    tmux.keys(&["q"]);
    tmux.wait_text("EXITED 0");
}

#[test]
fn the_research_views_plot_shade_and_write_a_case_study_figure() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    // Two seeds of a quick run: their curves in the jobs panel.
    let quick = ["--set", "epochs=3", "--set", "max_train_examples=64"];
    let mut submit = vec!["submit", "--from", "checkpoints/demo", "--variant", "full"];
    submit.extend(["--seeds", "2"]);
    submit.extend(quick);
    let ids = common::runs(&root, &submit);
    let start = Instant::now();
    while ids.lines().any(|id| {
        !common::runs(&root, &["list"])
            .lines()
            .any(|l| l.starts_with(id) && l.contains("finished"))
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the runs did not finish"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // In the scratch folder, so that F writes its figure there.
    let args = format!(
        "tui --data '{repo}/data/demo' --checkpoint '{repo}/checkpoints/demo'",
        repo = repo().display()
    );
    let line = command_line(scratch.path(), &args).replacen(
        &format!("cd '{}'", repo().display()),
        &format!("cd '{}'", scratch.path().display()),
        1,
    );
    let Some(tmux) = Tmux::start("research", &line) else {
        return;
    };
    tmux.wait_for("the scored demo", |s| {
        s.contains("examples · all (300/300)") && status_line(s).contains(" idle ")
    });
    // p in the tweet view: the second prompt by a_i, spread over the split.
    tmux.keys(&["Tab", "p", "p"]);
    let spread = tmux.wait_text("tweets, log count");
    let over: usize = spread
        .split(" a_i over ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{spread}"));
    assert!(
        (200..300).contains(&over),
        "the demo's test tweets with an image: {over}"
    );
    tmux.keys(&["F"]);
    tmux.wait_text("wrote figures/test-0.svg and .png");
    let svg = std::fs::read_to_string(scratch.path().join("figures/test-0.svg")).unwrap();
    assert!(svg.contains("A: demo"), "the model's row");
    let png = image::open(scratch.path().join("figures/test-0.png")).unwrap();
    assert_eq!(png.width(), 1920);
    tmux.keys(&["C"]);
    tmux.wait_text("confusion · rows gold");
    // Escape and a key sent at once read as Alt+key: wait for the window to close.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the matrix to close", |s| {
        !s.contains("confusion · rows gold")
    });
    tmux.keys(&["J"]);
    let jobs = tmux.wait_for("the curves", |s| {
        s.contains("loss · full · best") && s.contains("dev F1 · full · best")
    });
    assert!(jobs.contains("runs (2)"), "{jobs}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the jobs panel to close", |s| !s.contains("runs (2)"));
    tmux.keys(&["q"]);
    tmux.wait_text("EXITED 0");
}
