//! Small helpers shared across stages.

use std::io::Write;
use std::path::Path;

/// Why an atomic save failed: the caller's writing, or the file system around it.
#[derive(Debug)]
pub(crate) enum SaveError<E> {
    Write(E),
    Io(std::io::Error),
}

/// Opens (creating, never truncating) a file to take an flock on: the lock files of the
/// runner, the registry and a training.
pub(crate) fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// A model as a paper or a title names it: its folder's name, not where it lies on
/// this disk.
pub(crate) fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new
/// one (see [`write_atomic_with`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes)).map_err(|e| match e {
        SaveError::Write(e) | SaveError::Io(e) => e,
    })
}

/// The one writer of every save: `write` fills a temporary file with a unique name in
/// the same folder (through its handle, or by its path for writers that only take a
/// path); the file is synced, renamed over `path`, and the folder synced so that the
/// rename survives a crash. A failed or killed save leaves the old file as it was.
pub(crate) fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<(), E>,
) -> Result<(), SaveError<E>> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".promptmner-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(SaveError::Io)?;
    write(&mut tmp).map_err(SaveError::Write)?;
    finish_save(tmp, path, dir).map_err(SaveError::Io)
}

/// Syncs the written temporary file, gives it the old file's mode (an ordinary file's
/// for a new one: temporary files are private), renames it and syncs the folder.
fn finish_save(tmp: tempfile::NamedTempFile, path: &Path, dir: &Path) -> std::io::Result<()> {
    // By path: a writer given the path may have replaced the file the handle holds.
    std::fs::File::open(tmp.path())?.sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// `error` and each of its sources, joined by ": " (each level says its own cause
/// once, so nothing repeats).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A listing as the CLI prints it: no borders, columns two spaces apart, the first
/// (a name) left-aligned and the others (numbers) right-aligned; fill it with
/// `add_row` and print its `trim_fmt()`.
pub(crate) fn listing(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if index > 0 {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}

/// Whether `name` can be a file name inside a folder and nothing else: not empty, not
/// `.` or `..`, no path separator, no control character (ids and names from files that
/// become file names go through this first).
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// `label` reduced to characters safe in a file name and a Slurm job name everywhere
/// (ASCII letters, digits, `.`, `_`, `-`; anything else becomes `_`), never starting
/// with a dot.
pub(crate) fn safe_stem(label: &str) -> String {
    let stem: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match stem.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if stem.is_empty() => "_".to_string(),
        None => stem,
    }
}

/// `text` safe to print to a terminal: control characters (an ESC that would start a
/// terminal sequence, a newline inside a name) are shown escaped, as `\u{1b}`.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The most any text file other than a split is read to (configs, vocabularies,
/// candidate lists, a run's files); a run's events.jsonl of a long training is a few MB.
pub(crate) const MAX_TEXT_BYTES: u64 = 64 * 1024 * 1024;

/// A text file's contents without a leading UTF-8 byte-order mark (some editors write
/// one; no format here gives it a meaning), read to at most [`MAX_TEXT_BYTES`].
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    read_text_bounded(path, MAX_TEXT_BYTES)
}

/// As [`read_text`], to at most `limit` bytes whatever the file's metadata says (a
/// device or a growing file), and only from a regular file: a FIFO would block the
/// open, `/dev/zero` would never end.
pub(crate) fn read_text_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a folder, device or FIFO); give a file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "it is larger than {} MB, the most read",
                limit / (1024 * 1024)
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Writes an executable script for a test, through a child `sh` so that this process
/// never holds the file open for writing: a process another test thread forks at that
/// moment would inherit such a descriptor until it execs, and running the script then
/// fails with "Text file busy" (ETXTBSY).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn write_executable(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "cannot write {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn plain_names_stay_in_their_folder() {
        for name in ["1", "r0001-full-s1", "a.b", "..x"] {
            assert!(is_plain_name(name), "{name}");
        }
        for name in ["", ".", "..", "../x", "/etc/passwd", "a\\b", "a\nb", "a\0b"] {
            assert!(!is_plain_name(name), "{name:?}");
        }
    }

    #[test]
    fn safe_stems_are_plain_names() {
        assert_eq!(safe_stem("x/../../escape-1"), "x_.._.._escape-1");
        assert_eq!(safe_stem("..hidden"), "_.hidden");
        assert_eq!(safe_stem("a b\n$(c)"), "a_b___c_");
        assert_eq!(safe_stem(""), "_");
        for label in ["x/../../escape", "..", ".", "a\u{1b}[31m"] {
            assert!(is_plain_name(&safe_stem(label)), "{label:?}");
        }
    }

    #[test]
    fn control_characters_are_printed_escaped() {
        assert_eq!(printable("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        assert_eq!(printable("plain · text"), "plain · text");
    }

    #[test]
    fn devices_fifos_and_oversized_files_are_refused_without_reading_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_text(Path::new("/dev/zero")).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // No writer: opening it would block; it is refused before the open.
        let error = read_text(&fifo).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let big = dir.path().join("big.txt");
        std::fs::write(&big, vec![b'a'; 3 * 1024 * 1024]).unwrap();
        let error = read_text_bounded(&big, 2 * 1024 * 1024).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(error.to_string().contains("larger than 2 MB"), "{error}");
        std::fs::write(&big, [0xff, 0xfe, b'a']).unwrap();
        assert!(
            read_text(&big)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, "\u{feff}IMGID:1\n").unwrap();
        assert_eq!(read_text(&path).unwrap(), "IMGID:1\n");
        std::fs::write(&path, "plain").unwrap();
        assert_eq!(read_text(&path).unwrap(), "plain");
    }

    #[test]
    fn the_temporary_file_is_beside_the_target_and_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut temporary = PathBuf::new();
        write_atomic_with(&path, |file| {
            temporary = file.path().to_path_buf();
            file.write_all(b"new")
        })
        .unwrap();
        assert_eq!(temporary.parent(), Some(dir.path()));
        assert_ne!(temporary, path);
        assert!(!temporary.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"old").unwrap();
        let failed = write_atomic_with(&path, |file| {
            file.write_all(b"half of the new")?;
            Err(std::io::Error::other("the writer gave up"))
        });
        assert!(matches!(failed, Err(SaveError::Write(_))), "{failed:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_writer_that_replaces_its_file_by_path_is_saved_with_an_ordinary_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let tensors = std::collections::HashMap::from([(
            "w",
            candle_core::Tensor::new(&[1f32, 2.0], &candle_core::Device::Cpu).unwrap(),
        )]);
        // candle (safetensors) writes a file of its own and renames it over the path.
        write_atomic_with(&path, |file| {
            candle_core::safetensors::save(&tensors, file.path())
        })
        .unwrap();
        let loaded = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        assert_eq!(loaded["w"].to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn an_error_chain_names_each_level_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read x.toml")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("it is not UTF-8"));
        assert_eq!(error_chain(&error), "cannot read x.toml: it is not UTF-8");
    }

    #[test]
    fn a_listing_aligns_names_left_and_numbers_right() {
        let mut table = listing(&["name", "F1"]);
        table.add_row(vec!["a, \"quoted\" name", "7.50"]);
        table.add_row(vec!["b", "70.25"]);
        assert_eq!(
            table.trim_fmt(),
            "name                 F1\na, \"quoted\" name   7.50\nb                 70.25"
        );
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }
}
