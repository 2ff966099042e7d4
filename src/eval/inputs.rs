//! What an evaluation was given, counted, with a warning for each thing that makes
//! its scores mean less than they seem: images missing or unreadable, IMGIDs that are
//! not file names, a vocabulary without prompts or without a type, an empty split.

use serde::Serialize;

use crate::data::Tweet;
use crate::data::images::NoImage;
use crate::data::tags::EntityType;
use crate::model::ImageState;
use crate::model::device::Precision;
use crate::prompts::Vocabulary;

/// The tweets' images, by what became of each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageCounts {
    pub with_image: usize,
    pub without_imgid: usize,
    pub missing: usize,
    pub unreadable: usize,
    /// IMGIDs that are paths or hold control characters (read as no image).
    pub unsafe_id: usize,
}

/// The inputs of one evaluation and what is wrong with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InputReport {
    pub tweets: usize,
    pub images: ImageCounts,
    pub discrete_prompts: usize,
    pub continuous_prompts: usize,
    /// The precision the model ran in (fp32 unless bf16 was asked for and ran).
    pub precision: Precision,
    pub warnings: Vec<String>,
}

/// How many examples a warning names before it says "and N more".
const EXAMPLES: usize = 3;

/// Counts `tweets`' images from their `states` and checks the vocabulary in use.
pub fn input_report(
    tweets: &[Tweet],
    states: &[ImageState],
    vocabulary: &Vocabulary,
    discrete_used: bool,
) -> InputReport {
    let mut images = ImageCounts::default();
    let mut unreadable = Vec::new();
    let mut unsafe_ids = Vec::new();
    for state in states {
        match &state.no_image {
            None => images.with_image += 1,
            Some(NoImage::NoImageId) => images.without_imgid += 1,
            Some(NoImage::NotFound { .. }) => images.missing += 1,
            Some(reason @ NoImage::Unreadable { .. }) => {
                images.unreadable += 1;
                unreadable.push(reason.to_string());
            }
            Some(NoImage::UnsafeId { id }) => {
                images.unsafe_id += 1;
                unsafe_ids.push(format!("{id:?}"));
            }
            Some(NoImage::Removed) => {}
        }
    }
    let discrete = if discrete_used {
        vocabulary.prompts().len()
    } else {
        0
    };
    let mut warnings = Vec::new();
    if tweets.is_empty() {
        warnings.push("the split has no tweets: every score is 0".to_string());
    }
    if images.missing > 0 {
        let dir = states.iter().find_map(|s| match &s.no_image {
            Some(NoImage::NotFound { dir, .. }) => Some(dir.display().to_string()),
            _ => None,
        });
        warnings.push(format!(
            "{} of {} tweets name an image that is not in {}: they are scored text-only",
            images.missing,
            tweets.len(),
            dir.unwrap_or_default()
        ));
    }
    if images.unreadable > 0 {
        warnings.push(format!(
            "{} images cannot be decoded and are scored text-only: {}",
            images.unreadable,
            examples(&unreadable)
        ));
    }
    if images.unsafe_id > 0 {
        warnings.push(format!(
            "{} IMGIDs are not plain file names and are read as no image: {}",
            images.unsafe_id,
            examples(&unsafe_ids)
        ));
    }
    if discrete_used {
        for kind in EntityType::ALL {
            if !vocabulary.types.contains_key(&kind) {
                warnings.push(format!(
                    "the vocabulary has no [{kind}] section: no discrete prompt describes {kind}"
                ));
            }
        }
    }
    if discrete + vocabulary.continuous == 0 {
        warnings.push(
            "the vocabulary gives no prompts: the image adds nothing to the scores".to_string(),
        );
    }
    InputReport {
        tweets: tweets.len(),
        images,
        discrete_prompts: discrete,
        continuous_prompts: vocabulary.continuous,
        precision: Precision::Fp32,
        warnings,
    }
}

fn examples(items: &[String]) -> String {
    let shown = items[..items.len().min(EXAMPLES)].join(", ");
    match items.len().checked_sub(EXAMPLES) {
        Some(more) if more > 0 => format!("{shown} and {more} more"),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tweet() -> Tweet {
        crate::data::conll::parse_conll("IMGID:1\nParis\tB-LOC\n\n", std::path::Path::new("t.txt"))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn missing_unreadable_and_unsafe_images_and_thin_vocabularies_are_each_warned_about() {
        let tweets = vec![tweet(); 4];
        let states = vec![
            ImageState::none(NoImage::NoImageId),
            ImageState::none(NoImage::NotFound {
                id: "1".into(),
                dir: PathBuf::from("imgs"),
            }),
            ImageState::none(NoImage::Unreadable {
                path: PathBuf::from("imgs/2.jpg"),
                reason: "truncated".into(),
            }),
            ImageState::none(NoImage::UnsafeId { id: "../x".into() }),
        ];
        let report = input_report(&tweets, &states, &Vocabulary::default(), true);
        assert_eq!(
            report.images,
            ImageCounts {
                with_image: 0,
                without_imgid: 1,
                missing: 1,
                unreadable: 1,
                unsafe_id: 1
            }
        );
        let all = report.warnings.join("\n");
        for says in [
            "1 of 4 tweets name an image that is not in imgs",
            "imgs/2.jpg",
            "\"../x\"",
            "no [PER] section",
            "no [OTHER] section",
            "gives no prompts",
        ] {
            assert!(all.contains(says), "{says}: {all}");
        }
        let empty = input_report(&[], &[], &Vocabulary::default(), false);
        assert!(
            empty.warnings[0].contains("no tweets"),
            "{:?}",
            empty.warnings
        );
    }
}
