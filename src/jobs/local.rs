//! The local backend: a detached runner process (`promptmner runs worker`) takes queued
//! runs in order and trains each as a child process (`promptmner train`), at most
//! `limit` at once. It outlives the workbench; when it is gone, the next submission or
//! start of the workbench starts it again and it picks the queue up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::jobs::registry::{
    BackendKind, RegisteredRun, Registry, RegistryError, RunStatus, State, live_process,
};

/// The runner's lock, in the runs root: held (flock) by the live runner for its whole
/// life, so a runner that died, whatever its pid file says, holds nothing.
fn lock_path(root: &Path) -> PathBuf {
    root.join("runner.lock")
}

/// The live runner's pid, written beside the lock for people and tests to read (the
/// lock, not this file, says whether a runner is alive).
fn pid_path(root: &Path) -> PathBuf {
    root.join("runner.pid")
}

/// What the runner prints.
fn log_path(root: &Path) -> PathBuf {
    root.join("runner.log")
}

/// Whether a runner holds the lock of `root`.
pub(crate) fn runner_alive(root: &Path) -> bool {
    let Ok(file) = std::fs::File::open(lock_path(root)) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Starts a detached runner unless one is alive; returns the pid of the one started.
/// `program` is this executable. A thread waits for it, so it never lingers as a
/// zombie of a long-lived caller (the workbench).
pub(crate) fn ensure_runner(
    root: &Path,
    program: &Path,
    limit: usize,
) -> Result<Option<u32>, RegistryError> {
    if runner_alive(root) {
        return Ok(None);
    }
    let log = log_path(root);
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| RegistryError::Io { path: log, source })?;
    let errors = output.try_clone().map_err(|source| RegistryError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut child = Command::new(program)
        .args([
            "runs",
            "worker",
            "--max-parallel",
            &limit.to_string(),
            "--runs",
        ])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        // Its own process group: a Ctrl-C in the workbench's terminal does not reach it.
        .process_group(0)
        .spawn()
        .map_err(|source| RegistryError::Io {
            path: program.to_path_buf(),
            source,
        })?;
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    Ok(Some(pid))
}

/// Takes the runner lock; None when another live runner holds it. The lock lasts as
/// long as the returned file is open.
fn take_lock(root: &Path) -> Result<Option<std::fs::File>, RegistryError> {
    let path = lock_path(root);
    let io = |source| RegistryError::Io {
        path: path.clone(),
        source,
    };
    let file = crate::util::open_lock_file(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let pid = pid_path(root);
    crate::util::write_atomic(&pid, std::process::id().to_string().as_bytes())
        .map_err(|source| RegistryError::Io { path: pid, source })?;
    Ok(Some(file))
}

/// A training child, its run, and the GPU it was given.
struct Running {
    run: RegisteredRun,
    child: Child,
    gpu: Option<String>,
}

/// The GPUs runs are shared out on, one a run: the runner's own `CUDA_VISIBLE_DEVICES`
/// when set, else those `nvidia-smi -L` lists, else none (runs see the machine as it is).
fn gpus() -> Vec<String> {
    if let Some(visible) = std::env::var_os("CUDA_VISIBLE_DEVICES") {
        return visible
            .to_string_lossy()
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
    }
    let Ok(out) = Command::new("nvidia-smi").arg("-L").output() else {
        return Vec::new();
    };
    let listed = String::from_utf8_lossy(&out.stdout);
    let count = listed.lines().filter(|l| l.starts_with("GPU ")).count();
    (0..count).map(|i| i.to_string()).collect()
}

/// The runner's loop: start queued runs, at most `max_parallel` at once and, on a
/// machine with GPUs, one GPU each; record how each ends; stop when nothing is queued
/// or running.
pub(crate) fn run_worker(
    root: &Path,
    program: &Path,
    max_parallel: usize,
) -> Result<(), RegistryError> {
    serve(root, program, max_parallel, &gpus())
}

/// [`run_worker`] over the GPUs `gpus`.
fn serve(
    root: &Path,
    program: &Path,
    max_parallel: usize,
    gpus: &[String],
) -> Result<(), RegistryError> {
    let registry = Registry::open(root)?;
    let Some(_lock) = take_lock(root)? else {
        return Ok(());
    };
    let mut running: Vec<Running> = Vec::new();
    let result = (|| loop {
        running = reap(running)?;
        let (runs, _) = registry.list()?;
        let queued: Vec<RegisteredRun> = runs
            .into_iter()
            .filter(|r| r.spec.backend == BackendKind::Local && r.state == State::Queued)
            .map(|r| r.run)
            .collect();
        if queued.is_empty() && running.is_empty() {
            return Ok(());
        }
        for run in queued {
            if running.len() >= max_parallel.max(1) {
                break;
            }
            let gpu = match free_gpu(gpus, &running) {
                Some(gpu) => Some(gpu),
                None if gpus.is_empty() => None,
                None => break,
            };
            match start(&run, program, gpu.as_deref()) {
                Ok(child) => running.push(Running { run, child, gpu }),
                Err(e) => refuse_to_start(&run, &e),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    })();
    let _ = std::fs::remove_file(pid_path(root));
    result
}

/// A GPU no running run holds.
fn free_gpu(gpus: &[String], running: &[Running]) -> Option<String> {
    gpus.iter()
        .find(|g| !running.iter().any(|r| r.gpu.as_ref() == Some(g)))
        .cloned()
}

/// A run that cannot start is failed with the reason (so it is not retried forever);
/// one whose folder is gone is only reported. Either way the runner serves the rest.
fn refuse_to_start(run: &RegisteredRun, error: &RegistryError) {
    let error = crate::util::error_chain(error);
    tracing::warn!("cannot start {}: {error}", run.dir().display());
    let mut status = RunStatus::new(State::Failed);
    status.message = Some(format!("the runner could not start it: {error}"));
    if run.dir().is_dir() && run.write_status(&status).is_err() {
        tracing::warn!("cannot record the failure of {}", run.dir().display());
    }
}

fn start(run: &RegisteredRun, program: &Path, gpu: Option<&str>) -> Result<Child, RegistryError> {
    let output_path = run.files.output_log();
    let io = |source| RegistryError::Io {
        path: output_path.clone(),
        source,
    };
    // Claimed before the process exists: a runner killed between the two writes leaves
    // a run that is not queued (no later runner starts it twice) and, with no process
    // recorded, shows interrupted.
    run.write_status(&RunStatus::new(State::Running))?;
    let output = std::fs::File::create(&output_path).map_err(io)?;
    let errors = output.try_clone().map_err(io)?;
    // Arguments, never a shell line: nothing in a run's config is interpreted.
    let mut command = Command::new(program);
    if let Some(gpu) = gpu {
        command.env("CUDA_VISIBLE_DEVICES", gpu);
    }
    let child = command
        .arg("train")
        .arg("--config")
        .arg(run.files.train_config())
        .arg("--out")
        .arg(run.dir())
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|source| RegistryError::Io {
            path: program.to_path_buf(),
            source,
        })?;
    let mut status = RunStatus::new(State::Running);
    status.pid = Some(child.id());
    status.pid_start = crate::jobs::registry::process_start(child.id());
    run.write_status(&status)?;
    Ok(child)
}

/// Records the runs whose process ended; cancels those asked to stop. A run whose
/// folder was deleted meanwhile is reported and forgotten.
fn reap(running: Vec<Running>) -> Result<Vec<Running>, RegistryError> {
    let mut still = Vec::new();
    for mut job in running {
        let cancelled = job.run.files.cancel_marker().exists();
        if cancelled {
            let _ = job.child.kill();
        }
        let status = match job.child.try_wait() {
            Ok(None) => {
                still.push(job);
                continue;
            }
            Ok(Some(exit)) => {
                let resumable = exit.code() == Some(crate::train::EXIT_INTERRUPTED);
                let state = if cancelled {
                    State::Cancelled
                } else if exit.success() {
                    State::Finished
                } else if resumable {
                    State::Interrupted
                } else {
                    State::Failed
                };
                let mut status = RunStatus::new(state);
                status.exit_code = exit.code();
                if resumable && !cancelled {
                    status.message = Some(format!(
                        "stopped by a signal, its state saved: `promptmner train --config {} --out {} --resume` carries it on",
                        job.run.files.train_config().display(),
                        job.run.dir().display()
                    ));
                }
                status
            }
            Err(e) => {
                let mut status = RunStatus::new(State::Failed);
                status.message = Some(format!("lost the process: {e}"));
                status
            }
        };
        if !job.run.dir().is_dir() {
            tracing::warn!("{} was deleted while it ran", job.run.dir().display());
            continue;
        }
        job.run.write_status(&status)?;
    }
    Ok(still)
}

/// Cancels a local run: a queued one at once; a running one through its runner (or,
/// when the runner is gone, by signalling its training process, verified by pid and
/// start time, never a bare pid from a file).
pub(crate) fn cancel(run: &RegisteredRun) -> Result<(), RegistryError> {
    let current = crate::jobs::registry::cancellable(run)?;
    if current.state == State::Queued {
        return run.write_status(&RunStatus::new(State::Cancelled));
    }
    let marker = run.files.cancel_marker();
    std::fs::write(&marker, b"").map_err(|source| RegistryError::Io {
        path: marker,
        source,
    })?;
    let root = run.dir().parent().unwrap_or(Path::new("."));
    if !runner_alive(root)
        && let Some(pid) = live_process(&current.status)
    {
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        run.write_status(&RunStatus::new(State::Cancelled))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::registry::RunSpec;

    /// A stand-in for this executable: `program train ...` sleeps, then succeeds;
    /// `program runs worker ...` exits at once.
    fn fake_program(dir: &Path, seconds: f64) -> PathBuf {
        let path = dir.join("fake-promptmner");
        let script = format!("#!/bin/sh\n[ \"$1\" = train ] && sleep {seconds}\nexit 0\n");
        crate::util::write_executable(&path, &script);
        path
    }

    fn queued_run(registry: &Registry, stem: &str) -> RegisteredRun {
        let (id, run) = registry.allocate(stem).unwrap();
        let spec = RunSpec {
            id,
            group: "g".into(),
            variant: "full".into(),
            seed: 1,
            backend: BackendKind::Local,
            source: PathBuf::from("c.toml"),
            submitted: 0.0,
        };
        run.write_status(&RunStatus::new(State::Queued)).unwrap();
        std::fs::write(run.files.job_spec(), toml::to_string(&spec).unwrap()).unwrap();
        run
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn deleting_a_running_runs_folder_does_not_stop_the_runner() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("runs");
        let registry = Registry::open(&root).unwrap();
        let program = fake_program(scratch.path(), 0.5);
        let first = queued_run(&registry, "a");
        let second = queued_run(&registry, "b");
        let worker = {
            let (root, program) = (root.clone(), program.clone());
            std::thread::spawn(move || run_worker(&root, &program, 1))
        };
        wait_for("the first run to start", || {
            first.status().is_ok_and(|s| s.state == State::Running)
        });
        std::fs::remove_dir_all(first.dir()).unwrap();
        worker.join().unwrap().unwrap();
        assert_eq!(second.status().unwrap().state, State::Finished);
    }

    /// A stand-in trainer: records the GPU it was given in its run folder (`--out`),
    /// waits a little, and exits with `code`.
    fn recording_program(dir: &Path, code: i32) -> PathBuf {
        let path = dir.join("recording-promptmner");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = train ] || exit 0\necho \"${{CUDA_VISIBLE_DEVICES-none}}\" > \"$5/gpu\"\nsleep 0.4\nexit {code}\n"
        );
        crate::util::write_executable(&path, &script);
        path
    }

    #[test]
    fn runs_in_parallel_get_one_gpu_each_and_wait_for_a_free_one() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("runs");
        let registry = Registry::open(&root).unwrap();
        let runs: Vec<RegisteredRun> = (0..3)
            .map(|i| queued_run(&registry, &format!("r{i}")))
            .collect();
        let program = recording_program(scratch.path(), 0);
        let gpus = ["3".to_string(), "5".to_string()];
        let started = std::time::Instant::now();
        serve(&root, &program, 4, &gpus).unwrap();
        let given: Vec<String> = runs
            .iter()
            .map(|r| {
                std::fs::read_to_string(r.dir().join("gpu"))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        // Two at once on GPUs 3 and 5; the third waited for one of them.
        assert_eq!(&given[..2], &["3", "5"]);
        assert!(gpus.contains(&given[2]), "{given:?}");
        assert!(started.elapsed() >= Duration::from_millis(800));
        for run in &runs {
            assert_eq!(run.status().unwrap().state, State::Finished);
        }
        // Without GPUs, runs see the machine as it is.
        let plain = queued_run(&registry, "plain");
        serve(&root, &program, 1, &[]).unwrap();
        let seen = std::fs::read_to_string(plain.dir().join("gpu")).unwrap();
        assert_eq!(
            seen.trim(),
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or("none".into())
        );
    }

    #[test]
    fn a_run_stopped_with_its_state_saved_is_interrupted_and_says_how_to_resume() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("runs");
        let registry = Registry::open(&root).unwrap();
        let run = queued_run(&registry, "stopped");
        let program = recording_program(scratch.path(), crate::train::EXIT_INTERRUPTED);
        serve(&root, &program, 1, &[]).unwrap();
        let status = run.status().unwrap();
        assert_eq!(status.state, State::Interrupted);
        assert_eq!(status.exit_code, Some(crate::train::EXIT_INTERRUPTED));
        assert!(status.message.unwrap().contains("--resume"));
    }

    #[test]
    fn a_stale_pid_file_naming_a_live_process_is_no_runner() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("runs");
        let registry = Registry::open(&root).unwrap();
        // This test's own pid: alive, but not a runner holding the lock.
        std::fs::write(pid_path(&root), std::process::id().to_string()).unwrap();
        std::fs::write(lock_path(&root), "").unwrap();
        assert!(!runner_alive(&root));
        let run = queued_run(&registry, "a");
        run_worker(&root, &fake_program(scratch.path(), 0.0), 1).unwrap();
        assert_eq!(run.status().unwrap().state, State::Finished);
        // While a runner holds the lock, a second one does not start.
        let lock = take_lock(&root).unwrap().unwrap();
        assert!(runner_alive(&root));
        assert!(take_lock(&root).unwrap().is_none());
        drop(lock);
        assert!(!runner_alive(&root));
    }

    #[test]
    fn a_started_runner_is_reaped_not_left_a_zombie() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("runs");
        Registry::open(&root).unwrap();
        let program = fake_program(scratch.path(), 0.0);
        let pid = ensure_runner(&root, &program, 1).unwrap().unwrap();
        // The fake runner exits at once; a zombie keeps its /proc entry until reaped.
        wait_for("the runner to be reaped", || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }

    #[test]
    fn a_finished_run_is_not_cancelled_again() {
        let scratch = tempfile::tempdir().unwrap();
        let registry = Registry::open(scratch.path()).unwrap();
        let run = queued_run(&registry, "a");
        run.write_status(&RunStatus::new(State::Finished)).unwrap();
        let error = cancel(&run).unwrap_err();
        assert!(error.to_string().contains("already finished"), "{error}");
    }

    #[test]
    fn a_stale_status_pid_is_never_signalled() {
        let scratch = tempfile::tempdir().unwrap();
        let registry = Registry::open(scratch.path()).unwrap();
        let run = queued_run(&registry, "a");
        // A live process that is not the run's: a child of this test.
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        let mut status = RunStatus::new(State::Running);
        status.pid = Some(bystander.id());
        // Recorded before the pid was reused (a different start time).
        status.pid_start = crate::jobs::registry::process_start(bystander.id()).map(|t| t + 7);
        run.write_status(&status).unwrap();
        let outcome = cancel(&run);
        std::thread::sleep(Duration::from_millis(100));
        let alive = bystander.try_wait().unwrap().is_none();
        let _ = bystander.kill();
        let _ = bystander.wait();
        assert!(alive, "the bystander was signalled");
        assert!(
            outcome.is_err(),
            "the run is interrupted, not running: {outcome:?}"
        );
    }
}
