//! `promptmner data stats`: what a dataset directory holds, split by split.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::conll::{ConllError, read_conll};
use crate::data::images::{ImageResolver, NoImage};
use crate::data::spans::spans_from_tags;
use crate::data::tags::{EntityType, Tag};
use crate::data::{SPLITS, split_path};
use crate::progress::{Progress, Task};

/// Counts for one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitStats {
    pub split: String,
    pub tweets: usize,
    pub tokens: usize,
    /// Entities opened by a `B-` tag, per type (the count published dataset tables give).
    pub entities: BTreeMap<EntityType, usize>,
    /// Entities opened by an `I-` tag that continues nothing; conlleval (and so
    /// `promptmner score`) counts them as entities too.
    pub entities_opened_by_i: BTreeMap<EntityType, usize>,
    /// Length in words of the longest entity.
    pub longest_entity: usize,
    pub images_found: usize,
    pub images_missing: usize,
    pub images_unreadable: usize,
    pub without_imgid: usize,
}

impl SplitStats {
    /// Entities opened by `B-` tags.
    pub fn total_entities(&self) -> usize {
        self.entities.values().sum()
    }
}

/// Counts for every split present in a dataset directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetStats {
    pub dir: PathBuf,
    pub images_dir: PathBuf,
    pub splits: Vec<SplitStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{0} has none of train.txt, valid.txt, test.txt")]
    NoSplits(PathBuf),
    #[error(transparent)]
    Read(#[from] ConllError),
}

/// Reads every split of `dir` and checks every tweet's image (decoding it).
pub fn dataset_stats(
    dir: &Path,
    images: &ImageResolver,
    progress: &dyn Progress,
) -> Result<DatasetStats, StatsError> {
    let mut splits = Vec::new();
    // Each image decoded once, however many tweets share it.
    let mut checked: HashMap<String, Result<(), NoImage>> = HashMap::new();
    for split in SPLITS {
        let path = split_path(dir, split);
        if !path.is_file() {
            continue;
        }
        let tweets = read_conll(&path)?;
        let mut stats = SplitStats {
            split: split.to_string(),
            tweets: tweets.len(),
            tokens: 0,
            entities: EntityType::ALL.iter().map(|t| (*t, 0)).collect(),
            entities_opened_by_i: EntityType::ALL.iter().map(|t| (*t, 0)).collect(),
            longest_entity: 0,
            images_found: 0,
            images_missing: 0,
            images_unreadable: 0,
            without_imgid: 0,
        };
        let mut task = Task::start(
            progress,
            format!("{split}: checking images"),
            tweets.len() as u64,
        );
        for tweet in &tweets {
            task.advance(1);
            stats.tokens += tweet.len();
            for span in spans_from_tags(&tweet.tags) {
                let counts = match tweet.tags[span.start] {
                    Tag::B(_) => &mut stats.entities,
                    _ => &mut stats.entities_opened_by_i,
                };
                *counts.entry(span.kind).or_default() += 1;
                stats.longest_entity = stats.longest_entity.max(span.len());
            }
            let Some(id) = tweet.image_id.as_deref() else {
                stats.without_imgid += 1;
                continue;
            };
            let status = checked
                .entry(id.to_string())
                .or_insert_with(|| images.load(Some(id)).map(|_| ()));
            match status {
                Ok(()) => stats.images_found += 1,
                Err(NoImage::Unreadable { path, reason }) => {
                    tracing::warn!("{}: {reason}", path.display());
                    stats.images_unreadable += 1
                }
                Err(_) => stats.images_missing += 1,
            }
        }
        drop(task);
        splits.push(stats);
    }
    if splits.is_empty() {
        return Err(StatsError::NoSplits(dir.to_path_buf()));
    }
    Ok(DatasetStats {
        dir: dir.to_path_buf(),
        images_dir: images.dir().to_path_buf(),
        splits,
    })
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dataset {}  (images: {})",
            self.dir.display(),
            self.images_dir.display()
        )?;
        write!(f, "{:<22}", "")?;
        for s in &self.splits {
            write!(f, "{:>10}", s.split)?;
        }
        writeln!(f)?;
        let mut row = |name: &str, value: &dyn Fn(&SplitStats) -> usize| -> fmt::Result {
            write!(f, "{name:<22}")?;
            for s in &self.splits {
                write!(f, "{:>10}", value(s))?;
            }
            writeln!(f)
        };
        row("tweets", &|s| s.tweets)?;
        row("tokens", &|s| s.tokens)?;
        row("entities (B- tags)", &|s| s.total_entities())?;
        for kind in EntityType::ALL {
            row(&format!("  {kind}"), &|s| s.entities[&kind])?;
        }
        row("entities opened by I-", &|s| {
            s.entities_opened_by_i.values().sum()
        })?;
        row("longest entity (words)", &|s| s.longest_entity)?;
        row("images found", &|s| s.images_found)?;
        row("images missing", &|s| s.images_missing)?;
        row("images unreadable", &|s| s.images_unreadable)?;
        row("tweets without IMGID", &|s| s.without_imgid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn counts_tweets_entities_and_image_states() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train.txt"),
            "IMGID:1\nGeorge\tB-PER\nZim\tI-PER\nman\tI-PER\n\nIMGID:2\nParis\tB-LOC\n\nIMGID:3\nx\tO\n\nno\tO\nimage\tB-ORG\ndot\tI-LOC\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("test.txt"), "IMGID:1\na\tB-OTHER\n").unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        image::RgbImage::new(3, 3)
            .save(images.join("1.png"))
            .unwrap();
        std::fs::write(images.join("2.jpg"), b"not an image").unwrap();
        let stats = dataset_stats(
            dir.path(),
            &ImageResolver::for_dataset(dir.path(), None),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(stats.splits.len(), 2);
        let train = &stats.splits[0];
        assert_eq!((train.tweets, train.tokens), (4, 8));
        assert_eq!(train.entities_opened_by_i[&EntityType::Loc], 1);
        assert_eq!(train.entities[&EntityType::Loc], 1);
        assert_eq!(train.entities[&EntityType::Per], 1);
        assert_eq!(train.entities[&EntityType::Org], 1);
        assert_eq!(train.longest_entity, 3);
        assert_eq!(
            (
                train.images_found,
                train.images_unreadable,
                train.images_missing,
                train.without_imgid
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(stats.splits[1].split, "test");
        assert!(stats.to_string().contains("tweets without IMGID"));
    }

    #[test]
    fn a_directory_without_splits_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = dataset_stats(
            dir.path(),
            &ImageResolver::for_dataset(dir.path(), None),
            &NoProgress,
        )
        .unwrap_err();
        assert!(matches!(err, StatsError::NoSplits(_)));
    }
}
