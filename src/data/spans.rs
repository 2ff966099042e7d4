//! BIO tags to typed word spans, with conlleval's chunking rules.

use serde::{Deserialize, Serialize};

use crate::data::tags::{EntityType, Tag};

/// A typed entity over words `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: EntityType,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn same_boundaries(&self, other: &Span) -> bool {
        self.start == other.start && self.end == other.end
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Entities of a tag sequence, as conlleval (and seqeval's default mode) chunk them:
/// `B-X` always starts an entity; `I-X` continues an open entity of type X and
/// otherwise starts a new one; `O` closes. An entity may run to the end.
pub fn spans_from_tags(tags: &[Tag]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut open: Option<Span> = None;
    for (i, tag) in tags.iter().enumerate() {
        match *tag {
            Tag::O => spans.extend(open.take()),
            Tag::B(kind) => {
                spans.extend(open.take());
                open = Some(Span {
                    start: i,
                    end: i + 1,
                    kind,
                });
            }
            Tag::I(kind) => match open.as_mut() {
                Some(span) if span.kind == kind => span.end = i + 1,
                _ => {
                    spans.extend(open.take());
                    open = Some(Span {
                        start: i,
                        end: i + 1,
                        kind,
                    });
                }
            },
        }
    }
    spans.extend(open);
    spans
}

/// BIO tags of `len` words carrying the given non-overlapping spans.
pub fn tags_from_spans(spans: &[Span], len: usize) -> Vec<Tag> {
    let mut tags = vec![Tag::O; len];
    for span in spans {
        tags[span.start] = Tag::B(span.kind);
        for tag in &mut tags[span.start + 1..span.end] {
            *tag = Tag::I(span.kind);
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntityType::*;

    fn tags(labels: &str) -> Vec<Tag> {
        labels
            .split_whitespace()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    fn span(start: usize, end: usize, kind: EntityType) -> Span {
        Span { start, end, kind }
    }

    #[test]
    fn plain_entities() {
        assert_eq!(
            spans_from_tags(&tags("O B-PER I-PER O B-LOC")),
            [span(1, 3, Per), span(4, 5, Loc)]
        );
    }

    #[test]
    fn i_after_o_starts_an_entity() {
        assert_eq!(spans_from_tags(&tags("O I-ORG I-ORG O")), [span(1, 3, Org)]);
        assert_eq!(spans_from_tags(&tags("I-LOC")), [span(0, 1, Loc)]);
    }

    #[test]
    fn i_of_another_type_starts_a_new_entity() {
        assert_eq!(
            spans_from_tags(&tags("B-PER I-LOC I-LOC")),
            [span(0, 1, Per), span(1, 3, Loc)]
        );
    }

    #[test]
    fn b_b_are_two_entities() {
        assert_eq!(
            spans_from_tags(&tags("B-PER B-PER I-PER")),
            [span(0, 1, Per), span(1, 3, Per)]
        );
    }

    #[test]
    fn an_entity_can_end_the_tweet() {
        assert_eq!(
            spans_from_tags(&tags("O B-OTHER I-OTHER")),
            [span(1, 3, Other)]
        );
        assert!(spans_from_tags(&[]).is_empty());
    }

    #[test]
    fn spans_round_trip_through_tags() {
        let t = tags("B-PER I-PER O B-LOC B-ORG I-ORG I-ORG O B-OTHER");
        let spans = spans_from_tags(&t);
        assert_eq!(tags_from_spans(&spans, t.len()), t);
    }
}
