//! Small helpers shared across stages.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old file or the whole new
/// one: a temporary file in the same directory, synced, then renamed over the target.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".promptmner-").suffix(".tmp");
    // Temporary files are private (0600); the result is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
