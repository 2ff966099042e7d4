//! The vocabulary editor's state: the words, which lists are switched off, the
//! continuous count, and the session's undo and redo history.

use std::collections::BTreeSet;

use crate::data::tags::EntityType;
use crate::prompts::{Vocabulary, VocabularyInvalid, WordList};

/// What the user has edited: one snapshot of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditState {
    /// Every word, including those of lists switched off.
    pub vocabulary: Vocabulary,
    /// Lists switched off: kept here, left out of what is scored and saved.
    pub disabled: BTreeSet<(EntityType, WordList)>,
}

impl EditState {
    pub(crate) fn new(vocabulary: Vocabulary) -> Self {
        Self {
            vocabulary,
            disabled: BTreeSet::new(),
        }
    }

    /// The vocabulary the engine scores and `s` saves: switched-off lists emptied.
    pub(crate) fn effective(&self) -> Vocabulary {
        let mut vocabulary = self.vocabulary.clone();
        for (kind, words) in &mut vocabulary.types {
            for list in WordList::ALL {
                if self.disabled.contains(&(*kind, list)) {
                    match list {
                        WordList::Labels => words.labels.clear(),
                        WordList::Related => words.related.clear(),
                        WordList::Expert => words.expert.clear(),
                    }
                }
            }
        }
        vocabulary
    }
}

/// One row of the editor's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
    Template,
    Continuous,
    List(EntityType, WordList),
    Word(EntityType, WordList, usize),
}

/// A change the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit {
    AddWord(EntityType, WordList, String),
    RenameWord(EntityType, WordList, usize, String),
    DeleteWord(EntityType, WordList, usize),
    ToggleList(EntityType, WordList),
    Template(String),
    Continuous(usize),
}

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EditRefused {
    #[error(transparent)]
    Invalid(#[from] VocabularyInvalid),
    #[error("a word cannot be empty")]
    EmptyWord,
    #[error("the checkpoint trained {trained} continuous prompts; more needs a retrain")]
    TooManyContinuous { trained: usize },
    #[error("no word there")]
    NoWord,
}

/// The editor: current state, undo and redo stacks, the last saved state.
#[derive(Debug, Clone)]
pub(crate) struct Editor {
    pub state: EditState,
    pub saved: EditState,
    undo: Vec<EditState>,
    redo: Vec<EditState>,
    pub cursor: usize,
    pub continuous_trained: usize,
}

impl Editor {
    pub(crate) fn new(vocabulary: Vocabulary, continuous_trained: usize) -> Self {
        let state = EditState::new(vocabulary);
        Self {
            saved: state.clone(),
            state,
            undo: Vec::new(),
            redo: Vec::new(),
            cursor: 0,
            continuous_trained,
        }
    }

    pub(crate) fn unsaved(&self) -> bool {
        self.state.effective() != self.saved.effective()
    }

    /// Every row in display order: template, continuous count, then per type and list.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let mut rows = vec![Row::Template, Row::Continuous];
        for kind in EntityType::ALL {
            let words = self.state.vocabulary.types.get(&kind);
            for list in WordList::ALL {
                rows.push(Row::List(kind, list));
                let count = words.map_or(0, |w| w.list(list).len());
                rows.extend((0..count).map(|i| Row::Word(kind, list, i)));
            }
        }
        rows
    }

    pub(crate) fn current_row(&self) -> Row {
        let rows = self.rows();
        rows[self.cursor.min(rows.len() - 1)].clone()
    }

    pub(crate) fn word(&self, kind: EntityType, list: WordList, index: usize) -> Option<&str> {
        let words = self.state.vocabulary.types.get(&kind)?;
        words.list(list).get(index).map(String::as_str)
    }

    /// Applies an edit; a refused edit changes nothing.
    pub(crate) fn apply(&mut self, edit: Edit) -> Result<(), EditRefused> {
        let mut next = self.state.clone();
        let vocabulary = &mut next.vocabulary;
        match edit {
            Edit::AddWord(kind, list, word) => {
                if word.trim().is_empty() {
                    return Err(EditRefused::EmptyWord);
                }
                vocabulary.add_word(kind, list, &word)?;
            }
            Edit::RenameWord(kind, list, index, word) => {
                if word.trim().is_empty() {
                    return Err(EditRefused::EmptyWord);
                }
                let old = self.word(kind, list, index).ok_or(EditRefused::NoWord)?;
                vocabulary.rename_word(kind, list, old, &word)?;
            }
            Edit::DeleteWord(kind, list, index) => {
                let old = self.word(kind, list, index).ok_or(EditRefused::NoWord)?;
                vocabulary.remove_word(kind, list, old);
            }
            Edit::ToggleList(kind, list) => {
                if !next.disabled.remove(&(kind, list)) {
                    next.disabled.insert((kind, list));
                }
            }
            Edit::Template(template) => {
                let mut edited = vocabulary.clone();
                edited.template = template;
                edited.validate()?;
                *vocabulary = edited;
            }
            Edit::Continuous(count) => {
                if count > self.continuous_trained {
                    return Err(EditRefused::TooManyContinuous {
                        trained: self.continuous_trained,
                    });
                }
                vocabulary.continuous = count;
            }
        }
        if next != self.state {
            self.undo.push(std::mem::replace(&mut self.state, next));
            self.redo.clear();
        }
        Ok(())
    }

    /// Goes one edit back; false when there is none.
    pub(crate) fn undo(&mut self) -> bool {
        let Some(previous) = self.undo.pop() else {
            return false;
        };
        self.redo.push(std::mem::replace(&mut self.state, previous));
        true
    }

    /// Goes one undone edit forward; false when there is none.
    pub(crate) fn redo(&mut self) -> bool {
        let Some(next) = self.redo.pop() else {
            return false;
        };
        self.undo.push(std::mem::replace(&mut self.state, next));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor() -> Editor {
        let vocabulary = Vocabulary::parse(
            "template = \"an image of {}\"\ncontinuous = 2\n[PER]\nlabels = [\"person\"]\nexpert = [\"player\"]\n",
            std::path::Path::new("v.toml"),
        )
        .unwrap();
        Editor::new(vocabulary, 2)
    }

    #[test]
    fn undo_and_redo_walk_the_history() {
        let mut e = editor();
        let start = e.state.clone();
        e.apply(Edit::AddWord(
            EntityType::Per,
            WordList::Related,
            "man".into(),
        ))
        .unwrap();
        let added = e.state.clone();
        e.apply(Edit::ToggleList(EntityType::Per, WordList::Expert))
            .unwrap();
        assert!(
            e.state.effective().types[&EntityType::Per]
                .expert
                .is_empty()
        );
        assert!(e.undo());
        assert_eq!(e.state, added);
        assert!(e.undo());
        assert_eq!(e.state, start);
        assert!(!e.undo());
        assert!(e.redo());
        assert_eq!(e.state, added);
        // A new edit after an undo drops the redo stack.
        e.apply(Edit::Continuous(1)).unwrap();
        assert!(!e.redo());
    }

    #[test]
    fn invalid_edits_change_nothing() {
        let mut e = editor();
        let start = e.state.clone();
        let per = EntityType::Per;
        assert_eq!(
            e.apply(Edit::AddWord(per, WordList::Related, "  ".into())),
            Err(EditRefused::EmptyWord)
        );
        assert!(matches!(
            e.apply(Edit::AddWord(per, WordList::Related, "Player".into())),
            Err(EditRefused::Invalid(
                VocabularyInvalid::DuplicateWord { .. }
            ))
        ));
        assert!(matches!(
            e.apply(Edit::Template("an image".into())),
            Err(EditRefused::Invalid(VocabularyInvalid::Template(_)))
        ));
        assert_eq!(
            e.apply(Edit::Continuous(3)),
            Err(EditRefused::TooManyContinuous { trained: 2 })
        );
        assert_eq!(e.state, start);
        assert!(!e.undo(), "refused edits leave no history");
        assert!(!e.unsaved());
    }

    #[test]
    fn rename_keeps_the_position() {
        let mut e = editor();
        e.apply(Edit::RenameWord(
            EntityType::Per,
            WordList::Labels,
            0,
            "human".into(),
        ))
        .unwrap();
        assert_eq!(e.state.vocabulary.types[&EntityType::Per].labels, ["human"]);
        assert!(e.unsaved());
    }
}
