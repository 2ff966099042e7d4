#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use tracing_subscriber::EnvFilter;

// candle allocates a fresh buffer for every op; an allocator that keeps freed memory in
// the process avoids the page faults and clearing that dominate training with glibc's
// malloc (CANDLE_NOTES: AdamW 4× and backward 1.5× faster).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h (v2 and v3 alike): libmimalloc-sys declares the
/// setter and the option type but, in 0.1.49, no constant for this option; the test
/// below checks the number against mimalloc itself.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages in the process: never purge them back to the OS (training ran
/// 18.5 examples/s instead of 15.2 on all-MiniLM-L6-v2 here).
fn keep_freed_memory() {
    // SAFETY: setting an option is a plain store in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// On two cores or fewer, candle's element-wise thread pool spins against gemm's threads
/// for the same cores; one thread for it trained 14% and evaluated 20% faster here.
/// An explicit CANDLE_NUM_THREADS is left alone.
fn size_candle_pool() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 && std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the first thing main does, before any other thread exists.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

fn main() -> std::process::ExitCode {
    size_candle_pool();
    keep_freed_memory();
    let cli = promptmner::cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // The workbench owns the screen: its logs go to a file, never to the terminal.
    let _log_guard = if promptmner::cli::opens_workbench(&cli) {
        let dir = promptmner::stages::cache_root().join("logs");
        let (writer, guard) =
            tracing_appender::non_blocking(tracing_appender::rolling::never(dir, "workbench.log"));
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(writer)
            .with_ansi(false)
            .init();
        Some(guard)
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .without_time()
            .init();
        None
    };
    match promptmner::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Each level of the chain says its own cause once: "a: b: c".
            eprintln!("error: {err:#}");
            let interrupted = err
                .downcast_ref::<promptmner::train::TrainError>()
                .is_some_and(|e| matches!(e, promptmner::train::TrainError::Interrupted { .. }));
            if interrupted {
                // Resumable: a batch script requeues on this status.
                return std::process::ExitCode::from(promptmner::train::EXIT_INTERRUPTED as u8);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// mimalloc reads `MIMALLOC_PURGE_DELAY` when it starts: a process started with it
    /// finds that value under the option number this binary sets.
    #[test]
    fn the_purge_delay_option_is_the_one_mimalloc_reads_from_its_variable() {
        if std::env::var_os("PROMPTMNER_PURGE_DELAY_CHILD").is_some() {
            // SAFETY: reading an option is a plain load from mimalloc's option table.
            let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(value, 4321);
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::the_purge_delay_option_is_the_one_mimalloc_reads_from_its_variable",
            ])
            .env("PROMPTMNER_PURGE_DELAY_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "option {MI_OPTION_PURGE_DELAY} is not the purge delay"
        );
    }
}
