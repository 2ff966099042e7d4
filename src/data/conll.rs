//! Reader and writer for the Twitter-2015/2017 CoNLL layout:
//! an `IMGID:<id>` line, then `token<TAB>label` lines, a blank line between tweets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::data::tags::{Tag, TagError};

/// One tweet: its words, their gold (or predicted) tags and the id of its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tweet {
    /// The id after `IMGID:`; `None` when the tweet has no IMGID line (no image).
    pub image_id: Option<String>,
    pub words: Vec<String>,
    pub tags: Vec<Tag>,
    /// 1-based line of the tweet's first line in its file (for error messages).
    pub line: usize,
}

impl Tweet {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The tweet's words joined by spaces, for display.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// Errors reading a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum ConllError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}")]
    Label {
        path: PathBuf,
        line: usize,
        source: TagError,
    },
    #[error("{path}:{line}: line '{text}' has no label column (expected token<TAB>label)")]
    MissingLabel {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}:{line}: IMGID line is followed by no tokens")]
    EmptyTweet { path: PathBuf, line: usize },
    #[error(
        "{path} is {megabytes} MB; splits over {limit} MB are refused (Twitter-2015's largest is 1.3 MB): split the file"
    )]
    TooLarge {
        path: PathBuf,
        megabytes: u64,
        limit: u64,
    },
}

/// The largest split file read (memory stays a small multiple of it).
pub const MAX_SPLIT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a CoNLL file of tweets.
pub fn read_conll(path: &Path) -> Result<Vec<Tweet>, ConllError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_SPLIT_BYTES {
        return Err(ConllError::TooLarge {
            path: path.to_path_buf(),
            megabytes: size / (1024 * 1024),
            limit: MAX_SPLIT_BYTES / (1024 * 1024),
        });
    }
    let text =
        crate::util::read_text_bounded(path, MAX_SPLIT_BYTES).map_err(|source| ConllError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    parse_conll(&text, path)
}

/// Parses CoNLL text; `path` only names the source in errors.
///
/// Tolerates CRLF line ends, trailing whitespace, repeated blank lines, a missing final
/// newline, `-DOCSTART-` lines and tweets without an IMGID line.
pub fn parse_conll(text: &str, path: &Path) -> Result<Vec<Tweet>, ConllError> {
    let mut tweets = Vec::new();
    let mut current: Option<Tweet> = None;
    // An IMGID line seen but no token yet: (image id, line number).
    let mut pending_image: Option<(String, usize)> = None;

    let close = |current: &mut Option<Tweet>, tweets: &mut Vec<Tweet>| {
        if let Some(tweet) = current.take() {
            tweets.push(tweet);
        }
    };

    // `str::lines` strips "\n" and "\r\n" and does not yield an empty last line.
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            close(&mut current, &mut tweets);
            continue;
        }
        if line.starts_with("-DOCSTART-") {
            close(&mut current, &mut tweets);
            continue;
        }
        if let Some(id) = line.strip_prefix("IMGID:") {
            close(&mut current, &mut tweets);
            if let Some((_, line)) = pending_image {
                return Err(ConllError::EmptyTweet {
                    path: path.to_path_buf(),
                    line,
                });
            }
            pending_image = Some((id.trim().to_string(), line_no));
            continue;
        }
        let (word, label) = split_token_line(line).ok_or_else(|| ConllError::MissingLabel {
            path: path.to_path_buf(),
            line: line_no,
            text: line.to_string(),
        })?;
        let tag: Tag = label.parse().map_err(|source| ConllError::Label {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        let tweet = current.get_or_insert_with(|| match pending_image.take() {
            Some((id, line)) => Tweet {
                image_id: Some(id),
                words: Vec::new(),
                tags: Vec::new(),
                line,
            },
            None => Tweet {
                image_id: None,
                words: Vec::new(),
                tags: Vec::new(),
                line: line_no,
            },
        });
        tweet.words.push(word.to_string());
        tweet.tags.push(tag);
    }
    close(&mut current, &mut tweets);
    if let Some((_, line)) = pending_image {
        return Err(ConllError::EmptyTweet {
            path: path.to_path_buf(),
            line,
        });
    }
    Ok(tweets)
}

/// Splits `token<TAB>label`; files that separate with spaces are read too. The label is
/// the last column, so a token may itself hold a space when the separator is a tab.
fn split_token_line(line: &str) -> Option<(&str, &str)> {
    let (word, label) = line
        .rsplit_once('\t')
        .or_else(|| line.rsplit_once(char::is_whitespace))?;
    // Only ASCII blanks are separators: Twitter has tokens such as U+00A0 alone.
    let word = word.trim_end_matches([' ', '\t']);
    let label = label.trim();
    (!word.is_empty() && !label.is_empty()).then_some((word, label))
}

/// Formats tweets in the layout [`parse_conll`] reads: IMGID line (when the tweet has
/// one), `word<TAB>label` lines, one blank line between tweets, a final newline.
pub fn format_conll(tweets: &[Tweet]) -> String {
    let mut out = String::new();
    for (i, tweet) in tweets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if let Some(id) = &tweet.image_id {
            let _ = writeln!(out, "IMGID:{id}");
        }
        for (word, tag) in tweet.words.iter().zip(&tweet.tags) {
            let _ = writeln!(out, "{word}\t{tag}");
        }
    }
    out
}

/// Writes tweets atomically (temporary file in the same directory, then rename).
pub fn write_conll(path: &Path, tweets: &[Tweet]) -> std::io::Result<()> {
    crate::util::write_atomic(path, format_conll(tweets).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tags::EntityType::*;

    fn parse(text: &str) -> Result<Vec<Tweet>, ConllError> {
        parse_conll(text, Path::new("t.txt"))
    }

    #[test]
    fn a_split_of_a_gigabyte_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.txt");
        // A sparse file: 1 GB long, no disk or memory spent.
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let err = read_conll(&path).unwrap_err().to_string();
        assert!(err.contains("1024 MB") && err.contains("test.txt"), "{err}");
    }

    const CANONICAL: &str =
        "IMGID:1\nRT\tO\nGeorge\tB-PER\nZimmerman\tI-PER\n\nIMGID:2\nin\tO\nParis\tB-LOC\n";

    #[test]
    fn reads_the_canonical_layout() {
        let tweets = parse(CANONICAL).unwrap();
        assert_eq!(tweets.len(), 2);
        assert_eq!(tweets[0].image_id.as_deref(), Some("1"));
        assert_eq!(tweets[0].words, ["RT", "George", "Zimmerman"]);
        assert_eq!(tweets[0].tags, [Tag::O, Tag::B(Per), Tag::I(Per)]);
        assert_eq!(tweets[0].line, 1);
        assert_eq!(tweets[1].line, 6);
        assert_eq!(tweets[1].tags, [Tag::O, Tag::B(Loc)]);
    }

    #[test]
    fn tolerates_crlf_and_trailing_whitespace() {
        let crlf = CANONICAL.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap(), parse(CANONICAL).unwrap());
        let spaced = "IMGID:1  \nRT\tO \t\nGeorge\tB-PER\nZimmerman\tI-PER   \n \t\nIMGID:2\nin\tO\nParis\tB-LOC\n";
        assert_eq!(parse(spaced).unwrap(), parse(CANONICAL).unwrap());
    }

    #[test]
    fn tolerates_repeated_blank_lines_and_missing_final_newline() {
        let text = "\n\nIMGID:1\nRT\tO\nGeorge\tB-PER\nZimmerman\tI-PER\n\n\n\nIMGID:2\nin\tO\nParis\tB-LOC";
        assert_eq!(parse(text).unwrap(), {
            let mut t = parse(CANONICAL).unwrap();
            t[0].line = 3;
            t[1].line = 10;
            t
        });
    }

    #[test]
    fn skips_docstart_lines() {
        let text = format!("-DOCSTART- -X- O O\n\n{CANONICAL}");
        let tweets = parse(&text).unwrap();
        assert_eq!(tweets.len(), 2);
        assert_eq!(tweets[0].words[0], "RT");
    }

    #[test]
    fn reads_tweets_without_imgid() {
        let text = "hello\tO\nParis\tB-LOC\n\nIMGID:7\nx\tO\n\nbye\tO\n";
        let tweets = parse(text).unwrap();
        assert_eq!(tweets.len(), 3);
        assert_eq!(tweets[0].image_id, None);
        assert_eq!(tweets[1].image_id.as_deref(), Some("7"));
        assert_eq!(tweets[2].image_id, None);
        assert_eq!(tweets[2].line, 7);
    }

    #[test]
    fn keeps_tokens_made_of_unicode_spaces() {
        let tweets = parse("IMGID:1\n\u{a0}\tO\nx\tO\n").unwrap();
        assert_eq!(tweets[0].words, ["\u{a0}", "x"]);
        assert_eq!(format_conll(&tweets), "IMGID:1\n\u{a0}\tO\nx\tO\n");
    }

    #[test]
    fn reads_misc_as_other() {
        let tweets = parse("IMGID:1\nEuro\tB-MISC\nCup\tI-MISC\n").unwrap();
        assert_eq!(tweets[0].tags, [Tag::B(Other), Tag::I(Other)]);
    }

    #[test]
    fn a_line_without_label_names_file_and_line() {
        let err = parse("IMGID:1\nRT\tO\nGeorge\n").unwrap_err();
        assert!(
            matches!(err, ConllError::MissingLabel { line: 3, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "t.txt:3: line 'George' has no label column (expected token<TAB>label)"
        );
    }

    #[test]
    fn an_unknown_label_names_file_and_line() {
        let err = parse("IMGID:1\nRT\tO\nGeorge\tB-PERSON\n").unwrap_err();
        assert!(matches!(
            err,
            ConllError::Label {
                line: 3,
                source: TagError::UnknownType { .. },
                ..
            }
        ));
        assert!(
            crate::util::error_chain(&err).starts_with("t.txt:3: label 'B-PERSON'"),
            "{err}"
        );
    }

    #[test]
    fn a_label_that_is_not_bio_names_file_and_line() {
        let err = parse("IMGID:1\nRT\tO\n\nIMGID:2\nGeorge\tS-PER\n").unwrap_err();
        assert!(matches!(
            err,
            ConllError::Label {
                line: 5,
                source: TagError::NotBio(_),
                ..
            }
        ));
        let message = crate::util::error_chain(&err);
        assert!(
            message.starts_with("t.txt:5: ") && message.contains("not a BIO label"),
            "{message}"
        );
    }

    #[test]
    fn an_imgid_without_tokens_is_an_error() {
        let err = parse("IMGID:1\n\nIMGID:2\nx\tO\n").unwrap_err();
        assert!(matches!(err, ConllError::EmptyTweet { line: 1, .. }));
        let err = parse("IMGID:1\nx\tO\n\nIMGID:2\n").unwrap_err();
        assert!(matches!(err, ConllError::EmptyTweet { line: 4, .. }));
    }

    #[test]
    fn writer_round_trips_and_reproduces_canonical_files() {
        let tweets = parse(CANONICAL).unwrap();
        assert_eq!(format_conll(&tweets), CANONICAL);
        let messy = parse("x\tO\r\n\r\n\r\nIMGID:9\ny\tB-MISC").unwrap();
        let again = parse(&format_conll(&messy)).unwrap();
        assert_eq!(
            again
                .iter()
                .map(|t| (&t.image_id, &t.words, &t.tags))
                .collect::<Vec<_>>(),
            messy
                .iter()
                .map(|t| (&t.image_id, &t.words, &t.tags))
                .collect::<Vec<_>>()
        );
    }
}
