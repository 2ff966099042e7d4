//! The embedded demo world (DESIGN §6): a generated multimodal NER dataset in the
//! Twitter layout whose image-ambiguous tweets can only be typed by looking at the image.

pub mod canvas;
pub mod scenes;
pub mod text;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::conll::{Tweet, format_conll};
use crate::data::spans::{Span, tags_from_spans};
use crate::data::tags::EntityType;
use crate::progress::{Progress, Task};
use scenes::{Scene, View};

/// `data/demo` of the working directory when there is one, else of the source tree
/// the program was built from.
pub fn embedded_dir() -> PathBuf {
    let local = PathBuf::from("data/demo");
    if local.join("test.txt").is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
    }
}

/// One tweet's row of the dataset's `meta.tsv`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaRow {
    pub ambiguous: bool,
    /// The scene category its image shows.
    pub scene: Option<String>,
}

/// The rows of `meta.tsv` for a split, in the split's order (tweets without a row get
/// the default); `None` when the dataset has no such file.
pub fn meta_rows(dir: &Path, split: &str, tweets: usize) -> Option<Vec<MetaRow>> {
    let text = crate::util::read_text(&dir.join("meta.tsv")).ok()?;
    let mut rows = vec![MetaRow::default(); tweets];
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(id), Some(ambiguous)) = (cols.first(), cols.get(2)) else {
            continue;
        };
        let Some(index) = id
            .strip_prefix(split)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(row) = rows.get_mut(index) {
            row.ambiguous = *ambiguous == "true";
            row.scene = cols
                .get(3)
                .filter(|s| !s.is_empty() && **s != "-")
                .map(|s| s.to_string());
        }
    }
    Some(rows)
}

/// Which tweets of a split are image-ambiguous, from the dataset's `meta.tsv` (in the
/// split's order); `None` when the dataset has no such file.
pub fn ambiguous_flags(dir: &Path, split: &str, tweets: usize) -> Option<Vec<bool>> {
    meta_rows(dir, split, tweets).map(|rows| rows.into_iter().map(|r| r.ambiguous).collect())
}

/// Every word of a dataset directory's splits.
pub fn dataset_words(dir: &Path) -> std::collections::BTreeSet<String> {
    crate::data::SPLITS
        .iter()
        .filter_map(|split| crate::data::read_conll(&crate::data::split_path(dir, split)).ok())
        .flatten()
        .flat_map(|t| t.words)
        .collect()
}

/// The seed `data/demo` is generated with.
pub const DEFAULT_SEED: u64 = 2022;

/// Share of tweets that mention a shared name in neutral wording.
const AMBIGUOUS_SHARE: f64 = 0.35;
/// Share of tweets without entities.
const CHATTER_SHARE: f64 = 0.08;
/// Share of tweets without an image.
const NO_IMAGE_SHARE: f64 = 0.05;
/// Share of type-revealing tweets whose image shows an unrelated scene.
const UNRELATED_IMAGE_SHARE: f64 = 0.04;
/// Share of typed slots filled with a shared name rather than a one-type name.
const SHARED_NAME_IN_TYPED_SLOT: f64 = 0.2;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    pub seed: u64,
    /// Tweets per split: train, valid, test.
    pub sizes: [usize; 3],
    pub image_size: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            sizes: [1200, 300, 300],
            image_size: 96,
        }
    }
}

/// One generated tweet with its image and what the image shows.
#[derive(Debug, Clone)]
pub struct DemoTweet {
    /// `<split>-<index>`, the key of `meta.tsv`.
    pub id: String,
    pub tweet: Tweet,
    /// The type of a shared name is decided by the image alone.
    pub ambiguous: bool,
    /// The drawn view (absent when the tweet has no image).
    pub view: Option<View>,
    pub captions: Vec<String>,
    pub image: Option<RgbImage>,
}

/// A generated dataset: splits in train, valid, test order.
#[derive(Debug, Clone)]
pub struct DemoWorld {
    pub splits: Vec<(String, Vec<DemoTweet>)>,
}

/// Errors writing the demo world.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {path}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Generates the world; `caption` turns a word of [`View::caption_words`] into an
/// image's caption (the demo vocabulary's template filled with it). Each tweet draws
/// from its own generator seeded by (seed, index), so output depends on nothing but
/// the configuration.
pub fn generate(
    config: &DemoConfig,
    caption: &dyn Fn(&str) -> String,
    progress: &dyn Progress,
) -> DemoWorld {
    let total: usize = config.sizes.iter().sum();
    let mut task = Task::start(progress, "drawing the demo world", total as u64);
    let mut index = 0u64;
    let mut splits = Vec::new();
    for (split, &size) in crate::data::SPLITS.iter().zip(&config.sizes) {
        let tweets = (0..size)
            .map(|i| {
                let tweet = generate_tweet(config, caption, split, i, index);
                index += 1;
                task.advance(1);
                tweet
            })
            .collect();
        splits.push((split.to_string(), tweets));
    }
    drop(task);
    DemoWorld { splits }
}

fn tweet_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(b"demo-wd1");
    ChaCha8Rng::from_seed(key)
}

// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("word lists are not empty")
}

fn generate_tweet(
    config: &DemoConfig,
    caption: &dyn Fn(&str) -> String,
    split: &str,
    i: usize,
    index: u64,
) -> DemoTweet {
    let mut rng = tweet_rng(config.seed, index);
    let roll: f64 = rng.random();
    let (template, ambiguous, slots) = if roll < AMBIGUOUS_SHARE {
        let (name, kinds) = *pick(&mut rng, text::SHARED_NAMES);
        let kind = *pick(&mut rng, kinds);
        let template = *pick(&mut rng, text::NEUTRAL_TEMPLATES);
        (template, true, vec![(name, kind)])
    } else if roll < AMBIGUOUS_SHARE + CHATTER_SHARE {
        (*pick(&mut rng, text::CHATTER_TEMPLATES), false, Vec::new())
    } else {
        let template = *pick(&mut rng, text::TYPED_TEMPLATES);
        let slots = template
            .split(' ')
            .filter_map(slot_type)
            .map(|kind| (typed_name(&mut rng, kind), kind))
            .collect();
        (template, false, slots)
    };
    let tweet = fill_template(&mut rng, template, &slots);
    let main_type = slots.first().map(|&(_, kind)| kind);

    let view = if rng.random_bool(NO_IMAGE_SHARE) {
        None
    } else {
        let scene = match main_type {
            Some(kind) if ambiguous || !rng.random_bool(UNRELATED_IMAGE_SHARE) => {
                Scene::of_type(kind)
            }
            Some(kind) => *pick(
                &mut rng,
                &Scene::ALL
                    .into_iter()
                    .filter(|s| *s != Scene::of_type(kind))
                    .collect::<Vec<_>>(),
            ),
            None => *pick(&mut rng, &Scene::ALL),
        };
        Some(*pick(&mut rng, scene.views()))
    };
    let (image, captions) = match view {
        Some(view) => {
            let image = view.draw(&mut rng, config.image_size);
            let words = view.caption_words();
            let count = rng.random_range(1..=words.len().min(3));
            let captions = words.sample(&mut rng, count).map(|w| caption(w)).collect();
            (Some(image), captions)
        }
        None => (None, Vec::new()),
    };
    let image_id = view.map(|_| format!("{}", 100_000 + index));
    DemoTweet {
        id: format!("{split}-{i:04}"),
        tweet: Tweet {
            image_id,
            line: 0,
            ..tweet
        },
        ambiguous,
        view,
        captions,
        image,
    }
}

fn slot_type(token: &str) -> Option<EntityType> {
    match token {
        "{PER}" => Some(EntityType::Per),
        "{LOC}" => Some(EntityType::Loc),
        "{ORG}" => Some(EntityType::Org),
        "{OTHER}" => Some(EntityType::Other),
        _ => None,
    }
}

/// A name for a type-revealing slot: usually a one-type name, sometimes a shared one,
/// so shared names also occur where the text gives their type away.
fn typed_name(rng: &mut ChaCha8Rng, kind: EntityType) -> &'static str {
    if rng.random_bool(SHARED_NAME_IN_TYPED_SLOT) {
        let shared: Vec<&'static str> = text::SHARED_NAMES
            .iter()
            .filter(|(_, kinds)| kinds.contains(&kind))
            .map(|(name, _)| *name)
            .collect();
        pick::<&str>(rng, &shared)
    } else {
        pick::<&str>(rng, text::names(kind))
    }
}

/// Words and tags of a template with its entity slots (`{E}` or typed) filled in order.
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
fn fill_template(rng: &mut ChaCha8Rng, template: &str, slots: &[(&str, EntityType)]) -> Tweet {
    let mut words: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    let mut next_slot = slots.iter();
    for token in template.split(' ') {
        match token {
            "{E}" | "{PER}" | "{LOC}" | "{ORG}" | "{OTHER}" => {
                let &(name, kind) = next_slot.next().expect("a name for every slot");
                let start = words.len();
                words.extend(name.split(' ').map(str::to_string));
                spans.push(Span {
                    start,
                    end: words.len(),
                    kind,
                });
            }
            "{@}" => words.push(pick(rng, text::HANDLES).to_string()),
            "{#}" => words.push(pick(rng, text::HASHTAGS).to_string()),
            "{URL}" => {
                const ALNUM: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                let code: String = (0..10).map(|_| *pick(rng, ALNUM) as char).collect();
                words.push(format!("http://t.co/{code}"));
            }
            word => words.push(word.to_string()),
        }
    }
    let tags = tags_from_spans(&spans, words.len());
    Tweet {
        image_id: None,
        words,
        tags,
        line: 0,
    }
}

impl DemoWorld {
    /// Writes `train.txt`, `valid.txt`, `test.txt`, `images/<id>.png`, `captions.tsv`
    /// and `meta.tsv` into `dir`.
    pub fn write(&self, dir: &Path, progress: &dyn Progress) -> Result<(), DemoError> {
        let write = |path: PathBuf, bytes: &[u8]| {
            crate::util::write_atomic(&path, bytes)
                .map_err(|source| DemoError::Write { path, source })
        };
        let images = dir.join("images");
        std::fs::create_dir_all(&images).map_err(|source| DemoError::Write {
            path: images.clone(),
            source,
        })?;
        let mut captions = String::from("image_id\tcaption\n");
        let mut meta = String::from("tweet_id\timage_id\tambiguous\tscene\tview\n");
        let total = self.splits.iter().map(|(_, t)| t.len()).sum::<usize>();
        let mut task = Task::start(progress, "writing the demo world", total as u64);
        for (split, tweets) in &self.splits {
            let conll: Vec<Tweet> = tweets.iter().map(|t| t.tweet.clone()).collect();
            write(
                crate::data::split_path(dir, split),
                format_conll(&conll).as_bytes(),
            )?;
            for t in tweets {
                task.advance(1);
                let image_id = t.tweet.image_id.as_deref().unwrap_or("-");
                let _ = writeln!(
                    meta,
                    "{}\t{image_id}\t{}\t{}\t{}",
                    t.id,
                    t.ambiguous,
                    t.view.map_or("-", |v| v.scene().as_str()),
                    t.view.map_or("-", |v| v.as_str())
                );
                for caption in &t.captions {
                    let _ = writeln!(captions, "{image_id}\t{caption}");
                }
                if let Some(image) = &t.image {
                    let path = images.join(format!("{image_id}.png"));
                    write(
                        path.clone(),
                        &encode_png(image).map_err(|source| DemoError::Encode { path, source })?,
                    )?;
                }
            }
        }
        drop(task);
        write(dir.join("captions.tsv"), captions.as_bytes())?;
        write(dir.join("meta.tsv"), meta.as_bytes())
    }

    /// A grid of example images: one row per scene category, cycling through its views.
    pub fn contact_sheet(&self, per_row: usize) -> RgbImage {
        let Some(size) = self
            .tweets()
            .find_map(|t| t.image.as_ref().map(|i| i.width()))
        else {
            return RgbImage::new(1, 1);
        };
        let gap = 4;
        let cell = size + gap;
        let mut sheet = RgbImage::from_pixel(
            gap + cell * per_row as u32,
            gap + cell * Scene::ALL.len() as u32,
            image::Rgb([255, 255, 255]),
        );
        for (row, scene) in Scene::ALL.into_iter().enumerate() {
            let views = scene.views();
            let mut taken = vec![0usize; views.len()];
            for col in 0..per_row {
                let want = views[col % views.len()];
                let skip = taken[col % views.len()];
                taken[col % views.len()] += 1;
                let found = self
                    .tweets()
                    .filter(|t| t.view == Some(want))
                    .filter_map(|t| t.image.as_ref())
                    .nth(skip);
                if let Some(image) = found {
                    image::imageops::replace(
                        &mut sheet,
                        image,
                        (gap + cell * col as u32) as i64,
                        (gap + cell * row as u32) as i64,
                    );
                }
            }
        }
        sheet
    }

    pub fn tweets(&self) -> impl Iterator<Item = &DemoTweet> {
        self.splits.iter().flat_map(|(_, tweets)| tweets)
    }
}

/// PNG bytes with the strongest compression (the committed world must stay small).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )?;
    Ok(bytes)
}
