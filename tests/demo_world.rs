//! The committed demo world (data/demo): reproducible, readable, and built so that the
//! image, not the text, decides the type of its ambiguous names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use promptmner::data::conll::read_conll;
use promptmner::data::demo::scenes::Scene;
use promptmner::data::demo::{self, DemoConfig};
use promptmner::data::images::decode_image;
use promptmner::data::spans::spans_from_tags;
use promptmner::data::stats::dataset_stats;
use promptmner::data::tags::EntityType;
use promptmner::data::{SPLITS, Tweet, split_path};
use promptmner::progress::NoProgress;

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

/// Every file under `dir`, relative path → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

struct MetaRow {
    image_id: Option<String>,
    ambiguous: bool,
    scene: Option<Scene>,
}

/// meta.tsv rows by tweet id.
fn meta() -> BTreeMap<String, MetaRow> {
    let text = std::fs::read_to_string(demo_dir().join("meta.tsv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("tweet_id\timage_id\tambiguous\tscene\tview")
    );
    lines
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 5, "{line}");
            (
                cols[0].to_string(),
                MetaRow {
                    image_id: (cols[1] != "-").then(|| cols[1].to_string()),
                    ambiguous: cols[2].parse().unwrap(),
                    scene: Scene::parse(cols[3]),
                },
            )
        })
        .collect()
}

/// (tweet id, tweet) of every split.
fn tweets() -> Vec<(String, Tweet)> {
    SPLITS
        .iter()
        .flat_map(|split| {
            read_conll(&split_path(&demo_dir(), split))
                .unwrap()
                .into_iter()
                .enumerate()
                .map(move |(i, t)| (format!("{split}-{i:04}"), t))
        })
        .collect()
}

#[test]
fn demo_regenerates_byte_for_byte() {
    let out = tempfile::tempdir().unwrap();
    let status = common::promptmner()
        .args(["demo-data", "--out"])
        .arg(out.path())
        .args(["--seed", &demo::DEFAULT_SEED.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let committed = files(&demo_dir());
    let fresh = files(out.path());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (name, bytes) in &committed {
        assert!(
            bytes == &fresh[name],
            "{name} differs from a fresh generation"
        );
    }
    let total: usize = committed.values().map(Vec::len).sum();
    assert!(total < 4 << 20, "data/demo is {total} bytes");
}

#[test]
fn demo_other_seeds_give_other_worlds() {
    let small = |seed| DemoConfig {
        seed,
        sizes: [20, 5, 5],
        image_size: 32,
    };
    let vocabulary = promptmner::prompts::demo::vocabulary().unwrap();
    let caption = |word: &str| vocabulary.fill(word);
    let a = demo::generate(&small(1), &caption, &NoProgress);
    let b = demo::generate(&small(1), &caption, &NoProgress);
    let c = demo::generate(&small(2), &caption, &NoProgress);
    let words = |w: &demo::DemoWorld| {
        w.tweets()
            .map(|t| t.tweet.words.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(words(&a), words(&b));
    assert_ne!(words(&a), words(&c));
    assert!(
        a.tweets()
            .filter_map(|t| t.image.as_ref())
            .all(|i| i.width() == 32)
    );
}

#[test]
fn demo_has_the_default_sizes_and_every_image_decodes() {
    let meta = meta();
    let tweets = tweets();
    let counts: Vec<usize> = SPLITS
        .iter()
        .map(|s| tweets.iter().filter(|(id, _)| id.starts_with(s)).count())
        .collect();
    assert_eq!(counts, [1200, 300, 300]);
    let mut without_image = 0;
    for (id, tweet) in &tweets {
        let row = &meta[id];
        assert_eq!(tweet.image_id, row.image_id, "{id}");
        match &tweet.image_id {
            Some(image_id) => {
                let image =
                    decode_image(&demo_dir().join(format!("images/{image_id}.png"))).unwrap();
                assert_eq!((image.width(), image.height()), (96, 96));
                assert!(row.scene.is_some());
            }
            None => without_image += 1,
        }
    }
    let share = without_image as f64 / tweets.len() as f64;
    assert!(
        (0.02..0.08).contains(&share),
        "{share} of tweets have no image"
    );
}

#[test]
fn demo_scene_categories_are_balanced() {
    let meta = meta();
    let mut counts: BTreeMap<Scene, usize> = BTreeMap::new();
    for row in meta.values() {
        if let Some(scene) = row.scene {
            *counts.entry(scene).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    assert_eq!(counts.len(), 4);
    for (scene, n) in counts {
        let share = n as f64 / total as f64;
        assert!((0.18..0.32).contains(&share), "{scene:?}: {share}");
    }
}

/// The single entity of an ambiguous tweet: its words and gold type.
fn ambiguous_entity(tweet: &Tweet) -> (String, EntityType) {
    let spans = spans_from_tags(&tweet.tags);
    assert_eq!(spans.len(), 1, "{:?}", tweet.words);
    let s = spans[0];
    (tweet.words[s.start..s.end].join(" "), s.kind)
}

#[test]
fn demo_ambiguous_tweets_are_a_quarter_and_typed_by_their_image() {
    let meta = meta();
    let tweets = tweets();
    let ambiguous: Vec<&(String, Tweet)> =
        tweets.iter().filter(|(id, _)| meta[id].ambiguous).collect();
    let share = ambiguous.len() as f64 / tweets.len() as f64;
    assert!(share >= 0.25, "ambiguous share {share}");
    for (id, tweet) in &ambiguous {
        let (_, kind) = ambiguous_entity(tweet);
        if let Some(scene) = meta[id].scene {
            assert_eq!(
                scene.entity_type(),
                kind,
                "{id}: the image shows the gold type"
            );
        }
    }
}

#[test]
fn demo_ambiguous_names_really_occur_with_several_types() {
    let meta = meta();
    let tweets = tweets();
    let mut types_of: BTreeMap<String, BTreeSet<EntityType>> = BTreeMap::new();
    for (_, tweet) in &tweets {
        for s in spans_from_tags(&tweet.tags) {
            types_of
                .entry(tweet.words[s.start..s.end].join(" "))
                .or_default()
                .insert(s.kind);
        }
    }
    let names: BTreeSet<String> = tweets
        .iter()
        .filter(|(id, _)| meta[id].ambiguous)
        .map(|(_, t)| ambiguous_entity(t).0)
        .collect();
    assert!(names.len() >= 10);
    for name in names {
        assert!(
            types_of[&name].len() >= 2,
            "{name} occurs only as {:?}",
            types_of[&name]
        );
    }
}

#[test]
fn demo_text_alone_cannot_type_ambiguous_names() {
    // The best a text-only reader can do on an ambiguous test tweet is to learn, from
    // train, which type goes with its exact masked wording, then with its name. That
    // rule must stay near chance, while the image's scene is always right.
    let meta = meta();
    let tweets = tweets();
    let masked = |t: &Tweet| {
        let s = spans_from_tags(&t.tags)[0];
        let mut words: Vec<&str> = t.words.iter().map(String::as_str).collect();
        words.splice(s.start..s.end, ["<E>"]);
        // URLs are random strings; keep only their shape.
        words
            .iter()
            .map(|w| if w.starts_with("http") { "<URL>" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut by_context: BTreeMap<String, BTreeMap<EntityType, usize>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, BTreeMap<EntityType, usize>> = BTreeMap::new();
    for (id, t) in tweets
        .iter()
        .filter(|(id, _)| id.starts_with("train") && meta[id].ambiguous)
    {
        let _ = id;
        let (name, kind) = ambiguous_entity(t);
        *by_context
            .entry(masked(t))
            .or_default()
            .entry(kind)
            .or_default() += 1;
        *by_name.entry(name).or_default().entry(kind).or_default() += 1;
    }
    let majority = |m: Option<&BTreeMap<EntityType, usize>>| {
        m.and_then(|m| m.iter().max_by_key(|(_, n)| **n).map(|(k, _)| *k))
    };
    let (mut right, mut total) = (0, 0);
    for (_, t) in tweets
        .iter()
        .filter(|(id, _)| id.starts_with("test") && meta[id].ambiguous)
    {
        let (name, kind) = ambiguous_entity(t);
        let guess = majority(by_context.get(&masked(t))).or_else(|| majority(by_name.get(&name)));
        total += 1;
        right += usize::from(guess == Some(kind));
    }
    let accuracy = right as f64 / total as f64;
    eprintln!(
        "text-only rule on {total} ambiguous test tweets: {:.1}% right",
        100.0 * accuracy
    );
    assert!(total >= 60);
    assert!(
        accuracy < 0.6,
        "text alone types {:.1}% of ambiguous tweets",
        100.0 * accuracy
    );
}

#[test]
fn demo_captions_use_the_demo_vocabulary() {
    let vocabulary = promptmner::prompts::demo::vocabulary().unwrap();
    let prompts: BTreeSet<String> = vocabulary.prompts().into_iter().map(|p| p.text).collect();
    let text = std::fs::read_to_string(demo_dir().join("captions.tsv")).unwrap();
    let mut per_image: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let (id, caption) = line.split_once('\t').unwrap();
        assert!(
            prompts.contains(caption),
            "caption '{caption}' is not a demo prompt"
        );
        *per_image.entry(id).or_default() += 1;
    }
    let images = std::fs::read_dir(demo_dir().join("images"))
        .unwrap()
        .count();
    assert_eq!(per_image.len(), images, "every image has captions");
    assert!(per_image.values().all(|n| (1..=3).contains(n)));
}

#[test]
fn demo_is_accepted_by_data_stats() {
    let resolver = promptmner::data::images::ImageResolver::for_dataset(&demo_dir(), None);
    let stats = dataset_stats(&demo_dir(), &resolver, &NoProgress).unwrap();
    for split in &stats.splits {
        assert_eq!(
            split.images_missing + split.images_unreadable,
            0,
            "{}",
            split.split
        );
        assert_eq!(split.images_found + split.without_imgid, split.tweets);
        for kind in EntityType::ALL {
            assert!(split.entities[&kind] > 0, "{} has no {kind}", split.split);
        }
    }
}
