//! The local backend: a detached runner process (`promptmner runs worker`) takes queued
//! runs in order and trains each as a child process (`promptmner train`), at most
//! `limit` at once. It outlives the workbench; when it is gone, the next submission or
//! start of the workbench starts it again and it picks the queue up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::jobs::registry::{
    BackendKind, Registry, RegistryError, RunDir, RunStatus, State, process_alive, view,
};

/// The runner's lock: its pid, in the runs root.
fn lock_path(root: &Path) -> PathBuf {
    root.join("runner.pid")
}

/// The pid of the runner serving `root`, when one is alive.
pub(crate) fn runner_pid(root: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lock_path(root))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    process_alive(pid).then_some(pid)
}

/// Starts a detached runner unless one is alive. `program` is this executable.
pub(crate) fn ensure_runner(
    root: &Path,
    program: &Path,
    limit: usize,
) -> Result<(), RegistryError> {
    if runner_pid(root).is_some() {
        return Ok(());
    }
    let log = root.join("runner.log");
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| RegistryError::Io { path: log, source })?;
    let errors = output.try_clone().map_err(|source| RegistryError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    Command::new(program)
        .args(["runs", "worker", "--limit", &limit.to_string(), "--runs"])
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
    Ok(())
}

/// Takes the runner lock; false when another live runner holds it.
fn take_lock(root: &Path) -> Result<bool, RegistryError> {
    let path = lock_path(root);
    let io = |source| RegistryError::Io {
        path: path.clone(),
        source,
    };
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                use std::io::Write;
                write!(file, "{}", std::process::id()).map_err(io)?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if runner_pid(root).is_some() {
                    return Ok(false);
                }
                // A stale lock from a runner that died.
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(io(e)),
        }
    }
}

/// A training child and its run.
struct Running {
    run: RunDir,
    child: Child,
}

/// The runner's loop: start queued runs up to `limit`, record how each ends, stop when
/// nothing is queued or running.
pub(crate) fn run_worker(root: &Path, program: &Path, limit: usize) -> Result<(), RegistryError> {
    let registry = Registry::open(root)?;
    if !take_lock(root)? {
        return Ok(());
    }
    let mut running: Vec<Running> = Vec::new();
    let result = (|| loop {
        running = reap(running)?;
        let (runs, _) = registry.list()?;
        let queued: Vec<RunDir> = runs
            .into_iter()
            .filter(|r| r.spec.backend == BackendKind::Local && r.state == State::Queued)
            .map(|r| r.run)
            .collect();
        if queued.is_empty() && running.is_empty() {
            return Ok(());
        }
        for run in queued
            .into_iter()
            .take(limit.max(1).saturating_sub(running.len()))
        {
            running.push(start(run, program)?);
        }
        std::thread::sleep(Duration::from_millis(300));
    })();
    let _ = std::fs::remove_file(lock_path(root));
    result
}

fn start(run: RunDir, program: &Path) -> Result<Running, RegistryError> {
    let output_path = run.output_path();
    let io = |source| RegistryError::Io {
        path: output_path.clone(),
        source,
    };
    let output = std::fs::File::create(&output_path).map_err(io)?;
    let errors = output.try_clone().map_err(io)?;
    // Arguments, never a shell line: nothing in a run's config is interpreted.
    let child = Command::new(program)
        .arg("train")
        .arg("--config")
        .arg(run.config_path())
        .arg("--out")
        .arg(&run.dir)
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
    run.write_status(&status)?;
    Ok(Running { run, child })
}

/// Records the runs whose process ended; cancels those asked to stop.
fn reap(running: Vec<Running>) -> Result<Vec<Running>, RegistryError> {
    let mut still = Vec::new();
    for mut job in running {
        let cancelled = job.run.cancel_marker().exists();
        if cancelled {
            let _ = job.child.kill();
        }
        match job.child.try_wait() {
            Ok(None) => still.push(job),
            Ok(Some(exit)) => {
                let state = if cancelled {
                    State::Cancelled
                } else if exit.success() {
                    State::Finished
                } else {
                    State::Failed
                };
                let mut status = RunStatus::new(state);
                status.exit_code = exit.code();
                job.run.write_status(&status)?;
            }
            Err(e) => {
                let mut status = RunStatus::new(State::Failed);
                status.message = Some(format!("lost the process: {e}"));
                job.run.write_status(&status)?;
            }
        }
    }
    Ok(still)
}

/// Cancels a local run: a queued one at once; a running one through its runner (or,
/// when the runner is gone, by signalling the process itself).
pub(crate) fn cancel(run: &RunDir) -> Result<(), RegistryError> {
    let current = view(run.clone())?;
    match current.state {
        State::Queued => {
            run.write_status(&RunStatus::new(State::Cancelled))?;
        }
        State::Running => {
            std::fs::write(run.cancel_marker(), b"").map_err(|source| RegistryError::Io {
                path: run.cancel_marker(),
                source,
            })?;
            let root = run.dir.parent().unwrap_or(Path::new("."));
            if runner_pid(root).is_none()
                && let Some(pid) = current.status.pid
            {
                // SAFETY: kill(2) with a pid and a signal number has no memory effects.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                run.write_status(&RunStatus::new(State::Cancelled))?;
            }
        }
        _ => {}
    }
    Ok(())
}
