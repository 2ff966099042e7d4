//! Entity types and BIO tags of the Twitter MNER datasets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The four entity types of Twitter-2015/2017 (`OTHER` is the datasets' name for MISC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EntityType {
    Per,
    Loc,
    Org,
    Other,
}

impl EntityType {
    /// Every type, in the order used for tables, class indices and files.
    pub const ALL: [EntityType; 4] = [
        EntityType::Per,
        EntityType::Loc,
        EntityType::Org,
        EntityType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Per => "PER",
            EntityType::Loc => "LOC",
            EntityType::Org => "ORG",
            EntityType::Other => "OTHER",
        }
    }

    /// Position in [`EntityType::ALL`]; the span classifier's class index.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of PER, LOC, ORG, OTHER (or MISC).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type '{0}' (expected PER, LOC, ORG or OTHER)")]
pub struct UnknownEntityType(pub String);

impl FromStr for EntityType {
    type Err = UnknownEntityType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PER" => Ok(EntityType::Per),
            "LOC" => Ok(EntityType::Loc),
            "ORG" => Ok(EntityType::Org),
            // MISC is the CoNLL-2003 name of the same class.
            "OTHER" | "MISC" => Ok(EntityType::Other),
            _ => Err(UnknownEntityType(s.to_string())),
        }
    }
}

/// One word's BIO label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    O,
    B(EntityType),
    I(EntityType),
}

/// Why a label column could not be read as a BIO tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("label '{label}'")]
    UnknownType {
        label: String,
        source: UnknownEntityType,
    },
    #[error("label '{0}' is not a BIO label (expected O, B-<type> or I-<type>)")]
    NotBio(String),
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(label: &str) -> Result<Self, Self::Err> {
        if label == "O" {
            return Ok(Tag::O);
        }
        let (prefix, kind) = label
            .split_once('-')
            .ok_or_else(|| TagError::NotBio(label.to_string()))?;
        let make: fn(EntityType) -> Tag = match prefix {
            "B" => Tag::B,
            "I" => Tag::I,
            _ => return Err(TagError::NotBio(label.to_string())),
        };
        kind.parse()
            .map(make)
            .map_err(|source| TagError::UnknownType {
                label: label.to_string(),
                source,
            })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::O => f.write_str("O"),
            Tag::B(t) => write!(f, "B-{t}"),
            Tag::I(t) => write!(f, "I-{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_label_and_prints_it_back() {
        for label in [
            "O", "B-PER", "I-PER", "B-LOC", "I-ORG", "B-OTHER", "I-OTHER",
        ] {
            let tag: Tag = label.parse().unwrap();
            assert_eq!(tag.to_string(), label);
        }
    }

    #[test]
    fn misc_is_other() {
        assert_eq!("B-MISC".parse::<Tag>().unwrap(), Tag::B(EntityType::Other));
        assert_eq!("I-MISC".parse::<Tag>().unwrap(), Tag::I(EntityType::Other));
    }

    #[test]
    fn rejects_unknown_types_and_non_bio_labels() {
        assert!(matches!(
            "B-FOO".parse::<Tag>(),
            Err(TagError::UnknownType { .. })
        ));
        for label in ["E-PER", "S-LOC", "PER", "X", "", "b-PER", "B-"] {
            let err = label.parse::<Tag>().unwrap_err();
            assert!(
                matches!(err, TagError::NotBio(_) | TagError::UnknownType { .. }),
                "{label}"
            );
        }
        assert!(matches!("E-PER".parse::<Tag>(), Err(TagError::NotBio(_))));
    }
}
