//! Ablation runs through the command line: the local backend end to end, a killed run,
//! and nothing a user types reaching a shell. The Slurm backend is in tests/slurm.rs.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{compiles_as_latex, promptmner, runs};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The trimmed cells of the Markdown results table's row for `variant`.
fn markdown_row(table: &str, variant: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|c| c == variant))
        .unwrap_or_default()
}

/// The `runs list` line of `id`.
fn listed(root: &Path, id: &str) -> String {
    runs(root, &["list"])
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_default()
        .to_string()
}

fn wait_until(what: &str, seconds: u64, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "waited {seconds} s for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Files named like the payloads, anywhere they could have been created.
fn no_payload_files(dirs: &[&Path]) {
    for dir in dirs {
        for name in ["pwned", "pwned2"] {
            assert!(
                !dir.join(name).exists(),
                "{} was created",
                dir.join(name).display()
            );
        }
    }
}

const QUICK: [&str; 4] = ["--set", "epochs=1", "--set", "max_train_examples=64"];

#[test]
fn a_local_run_goes_from_queued_to_finished_with_its_metrics_in_the_table() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let vocabulary = scratch.path().join("words.toml");
    // A vocabulary word, a group name and a variant that would run something in a shell.
    let demo = std::fs::read_to_string(repo().join("prompts/demo.toml")).unwrap();
    std::fs::write(
        &vocabulary,
        demo.replacen(
            "labels = [\"person\"]",
            "labels = [\"person\", \"$(touch pwned)\"]",
            1,
        ),
    )
    .unwrap();
    let err = promptmner()
        .args(["runs", "--runs"])
        .arg(&root)
        .args([
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "$(touch pwned)",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("unknown variant"));
    let mut args = vec![
        "submit",
        "--from",
        "checkpoints/demo",
        "--variant",
        "full",
        "--variant",
        "current-vocabulary",
        "--seeds",
        "1",
        "--name",
        "\"; touch pwned2 #",
        "--prompts",
        vocabulary.to_str().unwrap(),
    ];
    args.extend(QUICK);
    let ids: Vec<String> = runs(&root, &args).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        wait_until("the run to finish", 300, || {
            listed(&root, id).contains("finished")
        });
    }
    let table = runs(&root, &["table"]);
    for variant in ["full", "current-vocabulary"] {
        let runs = markdown_row(&table, variant).get(1).cloned();
        assert_eq!(runs.as_deref(), Some("1/1"), "{variant}: {table}");
    }
    // Per-type F1 from the runs' test predictions; current-vocabulary against full: a
    // p-value from the pooled test predictions, and the caption naming the test.
    let header = markdown_row(&table, "variant");
    for column in ["PER F1", "LOC F1", "ORG F1", "OTHER F1", "p"] {
        assert!(header.iter().any(|h| h == column), "{column}: {table}");
    }
    let p_column = header.iter().position(|h| h == "p").unwrap();
    let p = markdown_row(&table, "current-vocabulary")
        .get(p_column)
        .cloned()
        .unwrap_or_default();
    let p: f64 = p.parse().unwrap_or_else(|_| panic!("no p-value: {table}"));
    assert!(p > 0.0 && p <= 1.0, "{table}");
    assert!(
        table.contains("approximate randomisation against full"),
        "{table}"
    );
    assert!(root.join(&ids[0]).join("test-predictions.txt").is_file());
    let csv = runs(&root, &["table", "--format", "csv"]);
    assert!(csv.starts_with("variant,finished,runs,p_mean"), "{csv}");
    let latex = runs(&root, &["table", "--format", "latex"]);
    assert!(
        latex.contains("\\toprule") && latex.contains("current-vocabulary"),
        "{latex}"
    );
    compiles_as_latex(&latex);
    let saved = std::fs::read_to_string(root.join(&ids[1]).join("vocabulary.toml")).unwrap();
    assert!(
        saved.contains("$(touch pwned)"),
        "the word is data: {saved}"
    );
    no_payload_files(&[
        repo(),
        scratch.path(),
        &root,
        &root.join(&ids[0]),
        &root.join(&ids[1]),
    ]);
}

/// The local runner's process id, from its lock file.
fn runner_pid(root: &Path) -> i32 {
    std::fs::read_to_string(root.join("runner.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn pid_of(run: &Path) -> Option<i32> {
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).ok()?).ok()?;
    status["pid"].as_i64().map(|p| p as i32)
}

#[test]
fn a_killed_run_is_failed_with_its_log_tail_and_a_dead_runner_leaves_it_interrupted() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let out = runs(
        &root,
        &[
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "full",
            "--variant",
            "plain",
            "--seeds",
            "1",
        ],
    );
    let ids: Vec<&str> = out.lines().collect();
    let first: PathBuf = root.join(ids[0]);
    // A fresh registry (this process) sees the running run and its progress.
    wait_until("an epoch of the first run", 300, || {
        let line = listed(&root, ids[0]);
        line.contains("running") && !line.contains(" 0/")
    });
    let pid = pid_of(&first).unwrap();
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the killed run to be failed", 60, || {
        listed(&root, ids[0]).contains("failed")
    });
    let shown = runs(&root, &["show", ids[0]]);
    assert!(
        shown.contains("--- log tail ---") && shown.contains("epoch"),
        "{shown}"
    );

    // The second run starts; kill the runner, then the training: interrupted.
    let second = root.join(ids[1]);
    wait_until("the second run to start", 120, || pid_of(&second).is_some());
    let runner = runner_pid(&root);
    // SAFETY: as above.
    unsafe {
        libc::kill(runner, libc::SIGKILL);
        libc::kill(pid_of(&second).unwrap(), libc::SIGKILL);
    }
    wait_until("the second run to be interrupted", 60, || {
        listed(&root, ids[1]).contains("interrupted")
    });
}

#[test]
fn a_restarted_registry_reattaches_to_a_run_whose_runner_died() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let out = runs(
        &root,
        &[
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "none",
            "--seeds",
            "1",
            "--set",
            "epochs=4",
        ],
    );
    let id = out.lines().next().unwrap().to_string();
    let run = root.join(&id);
    wait_until("the run to start", 120, || pid_of(&run).is_some());
    let runner = runner_pid(&root);
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(runner, libc::SIGKILL) };
    // The training goes on; every new look at the registry finds it running, then done.
    let first = listed(&root, &id);
    assert!(first.contains("running"), "{first}");
    wait_until("the orphaned run to finish", 300, || {
        listed(&root, &id).contains("finished")
    });
    let table = runs(&root, &["table"]);
    let runs = markdown_row(&table, "none").get(1).cloned();
    assert_eq!(runs.as_deref(), Some("1/1"), "{table}");
}

/// `promptmner runs --runs ROOT ARGS...` run from `cwd`, expected to fail: its stderr.
fn runs_refused(root: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = promptmner()
        .current_dir(cwd)
        .arg("runs")
        .arg("--runs")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "runs {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run folders under `root` (anything but the runner's and Slurm's files).
fn run_folders(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_submission_is_checked_before_any_run_folder_is_made() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let from = ["submit", "--from", "checkpoints/demo"];
    let refused = |extra: &[&str]| {
        let args: Vec<&str> = from.iter().chain(extra).copied().collect();
        runs_refused(&root, repo(), &args)
    };
    let err = refused(&["--variant", "full", "--seeds", "18446744073709551615"]);
    assert!(err.contains("between 1 and 100 seeds"), "{err}");
    let err = refused(&["--variant", "full", "--seeds", "0"]);
    assert!(err.contains("between 1 and 100 seeds"), "{err}");
    for n in ["4097", "99999999999"] {
        let variant = format!("continuous-{n}");
        let err = refused(&["--variant", &variant]);
        assert!(
            err.contains(&format!("variant {variant}")) && err.contains("model.continuous_prompts"),
            "{err}"
        );
    }
    let err = refused(&["--variant", "full", "--variant", "current-vocabulary"]);
    assert!(err.contains("needs a vocabulary"), "{err}");
    let err = refused(&["--variant", "full", "--name", "x\u{1b}[2Jy"]);
    assert!(err.contains("control characters"), "{err}");
    std::fs::write(
        root.join("slurm.toml"),
        "memory = \"1G\\ntouch /tmp/PWNED\"\n",
    )
    .unwrap();
    let err = refused(&["--variant", "full", "--backend", "slurm"]);
    assert!(
        err.contains("memory") && err.contains("nothing was submitted"),
        "{err}"
    );
    assert_eq!(run_folders(&root), Vec::<String>::new());
}

#[test]
fn a_copied_checkpoint_submitted_from_elsewhere_trains_with_its_own_files() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let copy = scratch.path().join("copy");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("checkpoints/demo"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // From a folder where the recorded data path means nothing: said, before any run.
    let err = runs_refused(
        &root,
        scratch.path(),
        &["submit", "--from", "copy", "--variant", "full"],
    );
    assert!(
        err.contains("the data folder") && err.contains("--set data=PATH"),
        "{err}"
    );
    assert_eq!(run_folders(&root), Vec::<String>::new());
    let data = format!("data={}", repo().join("data/demo").display());
    let out = promptmner()
        .current_dir(scratch.path())
        .args(["runs", "--runs"])
        .arg(&root)
        .args([
            "submit",
            "--from",
            "copy",
            "--variant",
            "none",
            "--seeds",
            "1",
            "--set",
            &data,
        ])
        .args(QUICK)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = std::fs::read_to_string(root.join(&id).join("train-config.toml")).unwrap();
    let copy = copy.canonicalize().unwrap();
    for own in [copy.join("clip"), copy.join("prompts.toml")] {
        assert!(
            config.contains(&format!("\"{}\"", own.display())),
            "{own:?} in\n{config}"
        );
    }
    assert!(
        !config.contains("checkpoints/demo"),
        "the original's files:\n{config}"
    );
    wait_until("the copy's run to finish", 300, || {
        listed(&root, &id).contains("finished")
    });
}

#[test]
fn runs_show_prints_names_from_files_escaped_and_ids_from_folders() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let run = root.join("r0001-full-s1");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("job.toml"),
        "id = \"r9999-\\u001b]0;owned\\u0007\"\ngroup = \"g\\u001b[2J\"\nvariant = \"full\"\nseed = 1\nbackend = \"local\"\nsource = \"c.toml\"\nsubmitted = 0.0\n",
    )
    .unwrap();
    std::fs::write(
        run.join("status.json"),
        "{\"state\":\"finished\",\"updated\":0.0}",
    )
    .unwrap();
    let shown = runs(&root, &["show", "r0001-full-s1"]);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.starts_with("r0001-full-s1: finished"), "{shown}");
    assert!(shown.contains("group g\\u{1b}[2J"), "{shown}");
    let listed = runs(&root, &["list"]);
    assert!(
        !listed.contains('\u{1b}') && !listed.contains("r9999"),
        "{listed:?}"
    );
    let err = runs_refused(&root, repo(), &["cancel", "r0001-full-s1"]);
    assert!(err.contains("already finished"), "{err}");
}

/// The number of `started` events in a run folder's events.jsonl.
fn starts(run: &Path) -> usize {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\":\"started\""))
        .count()
}

#[test]
fn ten_submitters_at_once_two_starters_and_a_killed_runner_train_every_run_exactly_once() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    let submit = |root: &Path, i: usize| {
        let name = format!("s{i}");
        let mut args = vec![
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "full",
            "--seeds",
            "1",
            "--name",
            &name,
            "--set",
            "epochs=2",
            "--set",
            "max_train_examples=64",
            "--max-parallel",
            "2",
        ];
        // Half the submitters ask for two seeds, so that groups differ in size.
        if i % 2 == 1 {
            args[6] = "2";
        }
        runs(root, &args)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Two processes start a runner each, as two workbenches do, while ten submitting
    // processes, from ten threads, run at once (each starts a runner too: one of them
    // all takes the lock).
    let starters: Vec<std::process::Child> = (0..2)
        .map(|_| {
            promptmner()
                .current_dir(repo())
                .args(["runs", "--runs"])
                .arg(&root)
                .args(["worker", "--max-parallel", "2"])
                .spawn()
                .unwrap()
        })
        .collect();
    let (root, submit) = (&root, &submit);
    let mut ids: Vec<String> = std::thread::scope(|scope| {
        let submitters: Vec<_> = (0..10)
            .map(|i| scope.spawn(move || submit(root, i)))
            .collect();
        submitters
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect()
    });
    ids.sort();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 15, "{ids:?}");
    assert_eq!(unique.len(), 15, "two runs got one id: {ids:?}");
    let numbers: std::collections::BTreeSet<&str> =
        ids.iter().map(|id| id.split('-').next().unwrap()).collect();
    assert_eq!(numbers.len(), 15, "two runs got one number: {ids:?}");

    // Kill the runner while it trains, then start it again as the next submission does.
    wait_until("a run to start", 120, || {
        ids.iter().any(|id| pid_of(&root.join(id)).is_some())
    });
    wait_until("the runner to write its pid", 30, || {
        root.join("runner.pid").is_file()
    });
    // SAFETY: signalling a process of this test.
    unsafe { libc::kill(runner_pid(root), libc::SIGKILL) };
    submit(root, 10);
    wait_until("every run to end", 600, || {
        ids.iter().all(|id| {
            let line = listed(root, id);
            ["finished", "failed", "interrupted", "cancelled"]
                .iter()
                .any(|s| line.contains(s))
        })
    });
    for mut starter in starters {
        // SAFETY: signalling a process of this test (a runner outlives its queue's end
        // by a poll at most; one killed above is already gone).
        unsafe { libc::kill(starter.id() as i32, libc::SIGKILL) };
        starter.wait().unwrap();
    }
    for id in &ids {
        let run = root.join(id);
        assert_eq!(starts(&run), 1, "{id} started {} times", starts(&run));
        assert!(
            listed(root, id).contains("finished"),
            "{}",
            listed(root, id)
        );
    }
}
