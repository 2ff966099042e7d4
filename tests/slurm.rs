//! The Slurm backend against a real single-node Slurm on this machine, which `.ci/run`
//! starts (`.ci/slurm-local`, as root) before the tests: the tests only use it. A tiny
//! demo run submitted through the backend finishes, a name that would run something in
//! a shell stays a name, and a run requeued while it trains carries on to the metrics
//! of an uninterrupted run.

mod common;

use std::path::Path;

use common::{promptmner, runs};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a Slurm node answers; None (after saying why) where none does outside CI.
/// Nothing is started here: starting daemons is `.ci/run`'s (or the person's) part.
fn slurm() -> Option<()> {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|out| {
            let states = String::from_utf8_lossy(&out.stdout);
            out.status.success()
                && states
                    .lines()
                    .any(|s| ["idle", "mixed", "allocated"].contains(&s.trim()))
        });
    if up {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Slurm node answers on CI (.ci/run starts one: .ci/install-test-deps, .ci/slurm-local)"
    );
    eprintln!(
        "skipped: no Slurm node answers `sinfo` (as root: .ci/install-test-deps, then .ci/slurm-local)"
    );
    None
}

/// A runs root in `scratch` with a small slurm.toml.
fn slurm_root(scratch: &Path) -> std::path::PathBuf {
    let root = scratch.join("runs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("slurm.toml"),
        "cpus = 1\nmemory = \"1G\"\ntime = \"00:10:00\"\n",
    )
    .unwrap();
    root
}

/// The line of `runs list` for run `id`.
fn list_line(root: &Path, id: &str) -> String {
    runs(root, &["list"])
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_tiny_demo_run_submitted_to_slurm_finishes() {
    if slurm().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let root = slurm_root(scratch.path());
    let out = runs(
        &root,
        &[
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "full",
            "--seeds",
            "1",
            "--backend",
            "slurm",
            "--name",
            "$(touch pwned)\"; touch pwned2 #",
            "--set",
            "epochs=1",
            "--set",
            "max_train_examples=64",
        ],
    );
    let id = out.lines().next().unwrap().to_string();
    let script = std::fs::read_to_string(root.join(&id).join("job.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --mem=1G"), "{script}");
    let start = Instant::now();
    loop {
        let line = list_line(&root, &id);
        if line.contains("finished") {
            break;
        }
        assert!(
            !line.contains("failed") && !line.contains("interrupted"),
            "{line}\n{}",
            runs(&root, &["show", &id])
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "waited 300 s: {line}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let table = runs(&root, &["table"]);
    // The Markdown row of `full`: its cells, trimmed.
    let full: Vec<&str> = table
        .lines()
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&"full"))
        .unwrap_or_default();
    assert_eq!(full.get(1), Some(&"1/1"), "{table}");
    for dir in [repo(), scratch.path(), &root, &root.join(&id)] {
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists());
    }
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A run's metrics but the timings, which no two runs share.
fn results(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
    let mut metrics: serde_json::Value = serde_json::from_str(&text).unwrap();
    for epoch in metrics["epochs"].as_array_mut().unwrap() {
        let epoch = epoch.as_object_mut().unwrap();
        epoch.remove("seconds");
        epoch.remove("examples_per_second");
    }
    metrics.to_string()
}

#[test]
fn a_run_requeued_while_it_trains_ends_with_the_metrics_of_an_uninterrupted_one() {
    if slurm().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let root = slurm_root(scratch.path());
    let settings = [
        "epochs=2",
        "max_train_examples=400",
        "batch_size=4",
        "log_every=1",
    ];
    let mut args = vec![
        "submit",
        "--from",
        "checkpoints/demo",
        "--variant",
        "full",
        "--seeds",
        "1",
        "--backend",
        "slurm",
    ];
    for setting in &settings {
        args.extend(["--set", setting]);
    }
    let id = runs(&root, &args).lines().next().unwrap().to_string();
    let dir = root.join(&id);
    let start = Instant::now();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(400),
                "waited 400 s for {what}: {}\n{}",
                list_line(&root, &id),
                runs(&root, &["show", &id])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("training steps", &|| {
        events(&dir)
            .iter()
            .any(|e| e["event"] == "step" && e["step"].as_u64() > Some(30))
    });
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).unwrap()).unwrap();
    let job = status["slurm_job"].as_str().unwrap().to_string();
    // What a preemption does: the job is stopped (SIGTERM) and queued again.
    let requeue = Command::new("scontrol")
        .args(["requeue", &job])
        .output()
        .unwrap();
    assert!(requeue.status.success(), "{requeue:?}");
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    wait("the requeued run to finish", &|| {
        let line = list_line(&root, &id);
        assert!(
            !line.contains("failed"),
            "{line}\n{}",
            runs(&root, &["show", &id])
        );
        let state = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        seen.borrow_mut().push(state);
        line.contains("finished")
    });
    assert!(
        seen.borrow().iter().any(|s| s == "requeued"),
        "{:?}",
        seen.borrow()
    );
    let kinds: Vec<String> = events(&dir)
        .iter()
        .filter(|e| e["event"] != "step" && e["event"] != "epoch")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["started", "interrupted", "resumed", "finished"]);
    let shown = runs(&root, &["show", &id]);
    assert!(
        shown.contains("attempts:") && shown.contains("2. resumed"),
        "{shown}"
    );

    // The same run, uninterrupted, on this machine.
    let whole = scratch.path().join("whole");
    let trained = promptmner()
        .current_dir(repo())
        .args(["train", "--config"])
        .arg(dir.join("train-config.toml"))
        .arg("--out")
        .arg(&whole)
        .output()
        .unwrap();
    assert!(trained.status.success(), "{trained:?}");
    assert_eq!(results(&whole), results(&dir));
}

/// The Slurm job of run `id` as its status records it.
fn slurm_job(root: &Path, id: &str) -> String {
    let text = std::fs::read_to_string(root.join(id).join("status.json")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    status["slurm_job"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_submission_of_several_runs_is_one_job_array_whose_tasks_fail_alone_and_cancel_together() {
    if slurm().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let root = slurm_root(scratch.path());
    // One task at a time, so that the second is still waiting when it is broken.
    let config = std::fs::read_to_string(root.join("slurm.toml")).unwrap();
    std::fs::write(root.join("slurm.toml"), config + "array_parallel = 1\n").unwrap();
    let submit = |name: &str| -> Vec<String> {
        let args = [
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "full",
            "--variant",
            "plain",
            "--seeds",
            "1",
            "--backend",
            "slurm",
            "--name",
            name,
            "--set",
            "epochs=1",
            "--set",
            "max_train_examples=32",
        ];
        runs(&root, &args).lines().map(str::to_string).collect()
    };
    let ids = submit("array");
    let jobs: Vec<String> = ids.iter().map(|id| slurm_job(&root, id)).collect();
    let array = jobs[0].split('_').next().unwrap().to_string();
    assert_eq!(jobs, [format!("{array}_0"), format!("{array}_1")]);
    let script_path = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".sbatch"))
        .unwrap();
    let script = std::fs::read_to_string(script_path).unwrap();
    assert!(script.contains("#SBATCH --array=0-1%1"), "{script}");
    // The second task's config is broken before it starts: it fails, alone.
    std::fs::write(
        root.join(&ids[1]).join("train-config.toml"),
        "epochs = \"x\"\n",
    )
    .unwrap();
    let start = Instant::now();
    let over = |line: &str| {
        ["finished", "failed", "cancelled"]
            .iter()
            .any(|s| line.contains(s))
    };
    while !ids.iter().all(|id| over(&list_line(&root, id))) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{}",
            runs(&root, &["list"])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        list_line(&root, &ids[0]).contains("finished"),
        "{}",
        runs(&root, &["list"])
    );
    assert!(
        list_line(&root, &ids[1]).contains("failed"),
        "{}",
        runs(&root, &["list"])
    );
    let output = std::fs::read_to_string(root.join(&ids[1]).join("output.log")).unwrap();
    assert!(output.contains("train-config.toml"), "{output}");

    // Cancelling a group cancels its array: no task of it is left in the queue.
    let ids = submit("cancelled");
    let group = runs(&root, &["show", &ids[0]])
        .lines()
        .find_map(|l| {
            l.strip_prefix("group ")
                .map(|g| g.split(' ').next().unwrap().to_string())
        })
        .unwrap();
    runs(&root, &["cancel", &group]);
    let array = slurm_job(&root, &ids[0])
        .split('_')
        .next()
        .unwrap()
        .to_string();
    let start = Instant::now();
    loop {
        let queue = Command::new("squeue")
            .args(["-h", "-r", "-j", &array])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&queue.stdout).trim().to_string();
        let states: Vec<String> = ids.iter().map(|id| list_line(&root, id)).collect();
        if listed.is_empty() && states.iter().all(|l| l.contains("cancelled")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{listed}\n{states:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
