//! The discrete prompt vocabulary (`prompts/*.toml`): a template, the number of
//! continuous prompts, and per entity type its label, related and expert words.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::tags::EntityType;

pub mod demo;

/// The most words a template may have: CLIP's context is 77 tokens, and a word the
/// template is filled with may take several (the model checks the exact count).
pub const MAX_TEMPLATE_WORDS: usize = 16;

/// The template every shipped vocabulary starts from (DESIGN §3).
pub const DEFAULT_TEMPLATE: &str = "an image of {}";

/// Which of a type's three word lists a word belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordList {
    Labels,
    Related,
    Expert,
}

impl WordList {
    pub const ALL: [WordList; 3] = [WordList::Labels, WordList::Related, WordList::Expert];

    pub fn as_str(self) -> &'static str {
        match self {
            WordList::Labels => "labels",
            WordList::Related => "related",
            WordList::Expert => "expert",
        }
    }
}

impl fmt::Display for WordList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entity type's words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeWords {
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub related: Vec<String>,
    #[serde(default)]
    pub expert: Vec<String>,
    /// Words to try as prompts (`promptmner suggest`, `S` in the workbench); not prompts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

impl TypeWords {
    pub fn list(&self, list: WordList) -> &[String] {
        match list {
            WordList::Labels => &self.labels,
            WordList::Related => &self.related,
            WordList::Expert => &self.expert,
        }
    }

    fn list_mut(&mut self, list: WordList) -> &mut Vec<String> {
        match list {
            WordList::Labels => &mut self.labels,
            WordList::Related => &mut self.related,
            WordList::Expert => &mut self.expert,
        }
    }

    /// Every word with the list it is in, labels first.
    pub fn words(&self) -> impl Iterator<Item = (WordList, &str)> {
        WordList::ALL
            .into_iter()
            .flat_map(move |list| self.list(list).iter().map(move |w| (list, w.as_str())))
    }
}

/// A discrete prompt: the template filled with one word, with where the word came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscretePrompt {
    pub text: String,
    pub word: String,
    pub kind: EntityType,
    pub list: WordList,
}

/// What makes a vocabulary invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabularyInvalid {
    #[error(
        "template '{template}' has {words} words; at most {MAX_TEMPLATE_WORDS} fit beside a word in CLIP's context (the paper's is 4: \"an image of {{}}\")"
    )]
    LongTemplate { template: String, words: usize },
    #[error("template '{0}' must contain '{{}}' exactly once (the word's slot)")]
    Template(String),
    #[error("{kind}.{list} has an empty word")]
    EmptyWord { kind: EntityType, list: WordList },
    #[error("{kind} has the word '{word}' twice ({first} and {second})")]
    DuplicateWord {
        kind: EntityType,
        word: String,
        first: WordList,
        second: WordList,
    },
    #[error(
        "'{0}' is not an entity type or setting (expected template, continuous, PER, LOC, ORG, OTHER)"
    )]
    UnknownType(String),
    /// TOML itself refuses a table given twice; only the alias can repeat a type.
    #[error(
        "[MISC] and [OTHER] are both given: MISC is read as OTHER (the datasets' name for it); keep one of the two"
    )]
    MiscAndOther,
    #[error("{key}: {message}")]
    BadValue { key: String, message: String },
}

/// Errors loading or saving a vocabulary file.
#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}")]
    Invalid {
        path: PathBuf,
        source: VocabularyInvalid,
    },
}

/// The prompt vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    pub template: String,
    /// Number of continuous (learned) prompts used beside the discrete ones.
    pub continuous: usize,
    pub types: BTreeMap<EntityType, TypeWords>,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Self {
            template: DEFAULT_TEMPLATE.to_string(),
            continuous: 0,
            types: BTreeMap::new(),
        }
    }
}

/// Field order of the file as written: settings, then types in PER, LOC, ORG, OTHER order.
#[derive(Serialize)]
struct VocabularyFile<'a> {
    template: &'a str,
    continuous: usize,
    #[serde(rename = "PER", skip_serializing_if = "Option::is_none")]
    per: Option<&'a TypeWords>,
    #[serde(rename = "LOC", skip_serializing_if = "Option::is_none")]
    loc: Option<&'a TypeWords>,
    #[serde(rename = "ORG", skip_serializing_if = "Option::is_none")]
    org: Option<&'a TypeWords>,
    #[serde(rename = "OTHER", skip_serializing_if = "Option::is_none")]
    other: Option<&'a TypeWords>,
}

impl Vocabulary {
    pub fn load(path: &Path) -> Result<Self, VocabularyError> {
        let text = crate::util::read_text(path).map_err(|source| VocabularyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, VocabularyError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| VocabularyError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        Self::from_table(table).map_err(|source| VocabularyError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    fn from_table(table: toml::Table) -> Result<Self, VocabularyInvalid> {
        let bad = |key: &str, message: String| VocabularyInvalid::BadValue {
            key: key.to_string(),
            message,
        };
        let mut vocabulary = Vocabulary::default();
        for (key, value) in table {
            match key.as_str() {
                "template" => {
                    vocabulary.template = value
                        .as_str()
                        .ok_or_else(|| bad(&key, "expected a string".into()))?
                        .to_string()
                }
                "continuous" => {
                    vocabulary.continuous = value
                        .as_integer()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad(&key, "expected a non-negative integer".into()))?
                }
                name => {
                    let kind: EntityType = name
                        .parse()
                        .map_err(|_| VocabularyInvalid::UnknownType(name.to_string()))?;
                    let words: TypeWords = value
                        .try_into()
                        .map_err(|e: toml::de::Error| bad(name, e.message().to_string()))?;
                    if vocabulary.types.insert(kind, words).is_some() {
                        return Err(VocabularyInvalid::MiscAndOther);
                    }
                }
            }
        }
        vocabulary.normalise();
        vocabulary.validate()?;
        Ok(vocabulary)
    }

    /// Trims surrounding whitespace from every word.
    fn normalise(&mut self) {
        for words in self.types.values_mut() {
            for list in WordList::ALL {
                for word in words.list_mut(list) {
                    *word = word.trim().to_string();
                }
            }
        }
    }

    /// Checks the template and every word list.
    pub fn validate(&self) -> Result<(), VocabularyInvalid> {
        if self.template.matches("{}").count() != 1 {
            return Err(VocabularyInvalid::Template(self.template.clone()));
        }
        let words = self.template.split_whitespace().count();
        if words > MAX_TEMPLATE_WORDS {
            return Err(VocabularyInvalid::LongTemplate {
                template: self.template.clone(),
                words,
            });
        }
        for (&kind, words) in &self.types {
            // CLIP's tokenizer lowercases, so words differing only in case are one prompt.
            let mut seen: BTreeMap<String, WordList> = BTreeMap::new();
            for (list, word) in words.words() {
                if word.trim().is_empty() {
                    return Err(VocabularyInvalid::EmptyWord { kind, list });
                }
                if let Some(&first) = seen.get(&word.to_lowercase()) {
                    return Err(VocabularyInvalid::DuplicateWord {
                        kind,
                        word: word.to_string(),
                        first,
                        second: list,
                    });
                }
                seen.insert(word.to_lowercase(), list);
            }
        }
        Ok(())
    }

    /// The TOML text [`Vocabulary::parse`] reads back to an equal vocabulary.
    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    pub fn to_toml(&self) -> String {
        let file = VocabularyFile {
            template: &self.template,
            continuous: self.continuous,
            per: self.types.get(&EntityType::Per),
            loc: self.types.get(&EntityType::Loc),
            org: self.types.get(&EntityType::Org),
            other: self.types.get(&EntityType::Other),
        };
        toml::to_string(&file).expect("a vocabulary always serialises")
    }

    /// Saves atomically: a reader sees the old file or the new one, never half of it.
    pub fn save(&self, path: &Path) -> Result<(), VocabularyError> {
        self.validate().map_err(|source| VocabularyError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        crate::util::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| {
            VocabularyError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The template filled with `word`.
    pub fn fill(&self, word: &str) -> String {
        self.template.replacen("{}", word, 1)
    }

    /// Every discrete prompt, by type (PER, LOC, ORG, OTHER) then list then file order.
    pub fn prompts(&self) -> Vec<DiscretePrompt> {
        self.types
            .iter()
            .flat_map(|(&kind, words)| {
                words.words().map(move |(list, word)| DiscretePrompt {
                    text: self.fill(word),
                    word: word.to_string(),
                    kind,
                    list,
                })
            })
            .collect()
    }

    /// Adds a word to a list; the vocabulary is unchanged when the result would be invalid.
    pub fn add_word(
        &mut self,
        kind: EntityType,
        list: WordList,
        word: &str,
    ) -> Result<(), VocabularyInvalid> {
        let mut edited = self.clone();
        edited
            .types
            .entry(kind)
            .or_default()
            .list_mut(list)
            .push(word.trim().to_string());
        edited.validate()?;
        *self = edited;
        Ok(())
    }

    /// Renames a word in place; the vocabulary is unchanged when the word is not there
    /// or the result would be invalid.
    pub fn rename_word(
        &mut self,
        kind: EntityType,
        list: WordList,
        old: &str,
        new: &str,
    ) -> Result<(), VocabularyInvalid> {
        let mut edited = self.clone();
        if let Some(slot) = edited
            .types
            .get_mut(&kind)
            .and_then(|words| words.list_mut(list).iter_mut().find(|w| *w == old))
        {
            *slot = new.trim().to_string();
        }
        edited.validate()?;
        *self = edited;
        Ok(())
    }

    /// Removes a word from a list; returns whether it was there.
    pub fn remove_word(&mut self, kind: EntityType, list: WordList, word: &str) -> bool {
        let Some(words) = self.types.get_mut(&kind) else {
            return false;
        };
        let list = words.list_mut(list);
        let before = list.len();
        list.retain(|w| w != word);
        list.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vocabulary, VocabularyError> {
        Vocabulary::parse(text, Path::new("v.toml"))
    }

    fn invalid(text: &str) -> VocabularyInvalid {
        match parse(text) {
            Err(VocabularyError::Invalid { source, .. }) => source,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    const SMALL: &str = r#"
template = "an image of {}"
continuous = 4
[PER]
labels = ["person"]
related = ["people", " someone "]
expert = ["player", "group of people"]
[LOC]
labels = ["location"]
"#;

    #[test]
    fn loads_words_and_builds_prompts() {
        let v = parse(SMALL).unwrap();
        assert_eq!(v.continuous, 4);
        assert_eq!(v.types[&EntityType::Per].related, ["people", "someone"]);
        let prompts = v.prompts();
        assert_eq!(prompts.len(), 6);
        assert_eq!(prompts[0].text, "an image of person");
        assert_eq!(prompts[4].text, "an image of group of people");
        assert_eq!(prompts[4].list, WordList::Expert);
        assert_eq!(prompts[5].kind, EntityType::Loc);
    }

    #[test]
    fn rejects_unknown_types() {
        assert_eq!(
            invalid("[PERSON]\nlabels = [\"x\"]\n"),
            VocabularyInvalid::UnknownType("PERSON".into())
        );
        let err = crate::util::error_chain(&parse("[PERSON]\nlabels = [\"x\"]\n").unwrap_err());
        assert!(
            err.starts_with("v.toml: 'PERSON' is not an entity type"),
            "{err}"
        );
    }

    #[test]
    fn rejects_empty_words() {
        assert_eq!(
            invalid("[ORG]\nexpert = [\"logo\", \"  \"]\n"),
            VocabularyInvalid::EmptyWord {
                kind: EntityType::Org,
                list: WordList::Expert
            }
        );
    }

    #[test]
    fn rejects_duplicate_words_within_a_type_across_lists() {
        assert_eq!(
            invalid("[PER]\nlabels = [\"player\"]\nexpert = [\"Player\"]\n"),
            VocabularyInvalid::DuplicateWord {
                kind: EntityType::Per,
                word: "Player".into(),
                first: WordList::Labels,
                second: WordList::Expert
            }
        );
        // The same word under two types is allowed.
        parse("[PER]\nlabels = [\"team\"]\n[ORG]\nlabels = [\"team\"]\n").unwrap();
    }

    #[test]
    fn rejects_templates_longer_than_clip_can_read() {
        let long = format!("{{}} {}", ["word"; 40].join(" "));
        let error = invalid(&format!("template = \"{long}\"\n"));
        assert!(
            matches!(error, VocabularyInvalid::LongTemplate { words: 41, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("at most 16"), "{error}");
    }

    #[test]
    fn rejects_templates_without_exactly_one_slot() {
        for template in ["an image", "{} and {}"] {
            assert_eq!(
                invalid(&format!("template = \"{template}\"\n")),
                VocabularyInvalid::Template(template.into())
            );
        }
    }

    #[test]
    fn rejects_unknown_list_names_bad_settings_and_bad_toml() {
        assert!(matches!(
            invalid("[PER]\nlabel = [\"x\"]\n"),
            VocabularyInvalid::BadValue { .. }
        ));
        assert!(matches!(
            invalid("continuous = -1\n"),
            VocabularyInvalid::BadValue { .. }
        ));
        let twice = invalid("[OTHER]\nlabels=[\"a\"]\n[MISC]\nlabels=[\"b\"]\n");
        assert!(matches!(twice, VocabularyInvalid::MiscAndOther));
        assert!(
            twice.to_string().contains("MISC is read as OTHER"),
            "{twice}"
        );
        assert!(matches!(parse("[PER"), Err(VocabularyError::Syntax { .. })));
    }

    #[test]
    fn saves_atomically_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        let v = parse(SMALL).unwrap();
        v.save(&path).unwrap();
        let back = Vocabulary::load(&path).unwrap();
        assert_eq!(back, v);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.find("[PER]").unwrap() < text.find("[LOC]").unwrap(),
            "{text}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn edits_keep_the_vocabulary_valid() {
        let mut v = parse(SMALL).unwrap();
        v.add_word(EntityType::Org, WordList::Expert, "logo")
            .unwrap();
        assert_eq!(v.types[&EntityType::Org].expert, ["logo"]);
        let before = v.clone();
        assert!(
            v.add_word(EntityType::Per, WordList::Labels, "PLAYER")
                .is_err()
        );
        assert!(v.add_word(EntityType::Per, WordList::Labels, " ").is_err());
        assert_eq!(v, before);
        assert!(v.remove_word(EntityType::Per, WordList::Expert, "player"));
        assert!(!v.remove_word(EntityType::Per, WordList::Expert, "player"));
    }

    #[test]
    fn shipped_twitter_vocabulary_has_the_papers_words_and_five_per_list() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/twitter.toml");
        let v = Vocabulary::load(&path).unwrap();
        let per = &v.types[&EntityType::Per];
        assert_eq!(
            per.related,
            ["people", "someone", "individual", "worker", "child"]
        );
        assert_eq!(
            per.expert,
            ["player", "pants", "hat", "suit", "group of people", "team"]
        );
        for kind in [EntityType::Loc, EntityType::Org, EntityType::Other] {
            for list in WordList::ALL {
                assert!(v.types[&kind].list(list).len() >= 5, "{kind}.{list}");
            }
        }
    }
}
