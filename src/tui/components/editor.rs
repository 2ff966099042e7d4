//! The vocabulary editor: template, continuous count, and each type's three lists
//! with their words; switched-off lists are marked `off` and dimmed. Its edits, undo,
//! redo, save and the suggestion search send the engine the vocabulary they make.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};

use super::overlays::{Input, InputPurpose, Overlay};
use super::{Component, Handled, Message, panel, type_color};
use crate::engine::suggest::SuggestRequest;
use crate::tui::app::{Command, Effect, Focus, Shared, Suggestions};
use crate::tui::editor::{Edit, Editor, Row};

/// The editor's state: whether it replaces the example list, and the vocabulary being
/// edited (once the checkpoint is loaded).
#[derive(Debug, Clone, Default)]
pub(crate) struct EditorPanel {
    pub shown: bool,
    pub vocabulary: Option<Editor>,
}

impl Component for EditorPanel {
    /// The editor's keys: the moves over its rows, and the edits of the row under the
    /// cursor.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        match self.on_row(command, shared.page) {
            Some(messages) => Handled::Consumed(messages),
            None => Handled::NotConsumed,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let unsaved = if self.unsaved() { " [+]" } else { "" };
        let block = panel(
            format!("vocabulary{unsaved}"),
            shared.focused(Focus::Editor),
        );
        let Some(editor) = &self.vocabulary else {
            frame.render_widget(Paragraph::new("loading…").block(block), area);
            return;
        };
        let items: Vec<ListItem> = editor.rows().iter().map(|row| item(editor, row)).collect();
        let list = List::new(items)
            .block(block)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶");
        let mut state = ListState::default().with_selected(Some(editor.cursor));
        frame.render_stateful_widget(list, area, &mut state);
    }
}

impl EditorPanel {
    pub(crate) fn unsaved(&self) -> bool {
        self.vocabulary.as_ref().is_some_and(Editor::unsaved)
    }

    /// `e`: the editor in place of the example list, focused, or the list back.
    pub(crate) fn toggle(&mut self) -> Vec<Message> {
        self.shown = !self.shown;
        let focus = if self.shown {
            Focus::Editor
        } else {
            Focus::List
        };
        vec![Message::Focus(focus)]
    }

    /// `None` when the command is not the editor's.
    fn on_row(&mut self, command: Command, page: usize) -> Option<Vec<Message>> {
        let editor = self.vocabulary.as_mut()?;
        let rows = editor.rows().len();
        let row = editor.current_row();
        match command {
            Command::Down => editor.cursor = (editor.cursor + 1).min(rows - 1),
            Command::Up => editor.cursor = editor.cursor.saturating_sub(1),
            Command::PageDown => editor.cursor = (editor.cursor + page).min(rows - 1),
            Command::PageUp => editor.cursor = editor.cursor.saturating_sub(page),
            Command::Top => editor.cursor = 0,
            Command::Bottom => editor.cursor = rows - 1,
            Command::Back => return Some(vec![Message::Focus(Focus::Tweet)]),
            Command::AddWord => {
                if let Row::List(kind, list) | Row::Word(kind, list, _) = row {
                    return Some(input(InputPurpose::AddWord(kind, list), ""));
                }
            }
            Command::RenameWord | Command::Open => match row {
                Row::Word(kind, list, i) => {
                    let word = editor.word(kind, list, i).unwrap_or_default().to_string();
                    return Some(input(InputPurpose::RenameWord(kind, list, i), &word));
                }
                Row::Template => {
                    let template = editor.state.vocabulary.template.clone();
                    return Some(input(InputPurpose::Template, &template));
                }
                Row::List(kind, list) => return Some(self.edit(Edit::ToggleList(kind, list))),
                Row::Continuous => {}
            },
            Command::DeleteWord => {
                if let Row::Word(kind, list, i) = row {
                    return Some(self.edit(Edit::DeleteWord(kind, list, i)));
                }
            }
            Command::ToggleList => {
                if let Row::List(kind, list) | Row::Word(kind, list, _) = row {
                    return Some(self.edit(Edit::ToggleList(kind, list)));
                }
            }
            Command::EditTemplate => {
                let template = editor.state.vocabulary.template.clone();
                return Some(input(InputPurpose::Template, &template));
            }
            _ => return None,
        }
        Some(Vec::new())
    }

    /// Undo or redo; the engine gets the vocabulary it comes back to.
    pub(crate) fn history(&mut self, step: fn(&mut Editor) -> bool, none: &str) -> Vec<Message> {
        let Some(editor) = &mut self.vocabulary else {
            return Vec::new();
        };
        if step(editor) {
            vec![Message::ClearStatus, Message::VocabularyChanged]
        } else {
            vec![Message::Status(none.into())]
        }
    }

    pub(crate) fn continuous(&mut self, step: isize) -> Vec<Message> {
        let Some(editor) = &self.vocabulary else {
            return Vec::new();
        };
        let now = editor.state.vocabulary.continuous;
        let Some(count) = now.checked_add_signed(step) else {
            return vec![Message::Status("already no continuous prompts".into())];
        };
        self.edit(Edit::Continuous(count))
    }

    /// Applies an edit; on success the engine gets the new vocabulary (and count).
    pub(crate) fn edit(&mut self, edit: Edit) -> Vec<Message> {
        let Some(editor) = &mut self.vocabulary else {
            return Vec::new();
        };
        match editor.apply(edit) {
            Ok(()) => vec![Message::ClearStatus, Message::VocabularyChanged],
            Err(refused) => vec![Message::Status(format!("refused: {refused}"))],
        }
    }

    /// `s`: saves the vocabulary, or asks first when that overwrites the checkpoint's.
    pub(crate) fn save(&self, confirmed: bool, shared: &Shared) -> Vec<Message> {
        let Some(editor) = &self.vocabulary else {
            return Vec::new();
        };
        if shared.session.save_needs_confirm && !confirmed {
            return vec![Message::Open(Overlay::ConfirmOverwrite)];
        }
        vec![Message::Effect(Effect::Save {
            path: shared.session.save_path.clone(),
            vocabulary: editor.state.effective(),
        })]
    }

    /// A save the loop carried out: on success the saved state is the current one.
    pub(crate) fn saved(&mut self, result: Result<std::path::PathBuf, String>) -> Vec<Message> {
        match result {
            Ok(path) => {
                if let Some(editor) = &mut self.vocabulary {
                    editor.saved = editor.state.clone();
                }
                vec![Message::Status(format!("saved {}", path.display()))]
            }
            Err(message) => vec![Message::Status(message)],
        }
    }

    /// Starts a search over the candidates of the list under the cursor (or shows the
    /// running one again).
    pub(crate) fn suggest(&self, shared: &Shared) -> Vec<Message> {
        let window = Message::Open(Overlay::Suggestions { cursor: 0 });
        if shared.suggestions.as_ref().is_some_and(|s| s.running) {
            return vec![window];
        }
        let Some(editor) = &self.vocabulary else {
            return Vec::new();
        };
        let (Row::List(kind, list) | Row::Word(kind, list, _)) = editor.current_row() else {
            return vec![Message::Status(
                "put the editor's cursor on a list (e), then S".into(),
            )];
        };
        let base = editor.state.effective();
        let candidates = shared.candidates.clone().unwrap_or_else(|| {
            editor
                .state
                .vocabulary
                .types
                .get(&kind)
                .map(|w| w.candidates.clone())
                .unwrap_or_default()
        });
        if candidates.is_empty() {
            return vec![Message::Status(format!(
                "{kind} has no candidates (a `candidates` list in the vocabulary)"
            ))];
        }
        let search = Suggestions {
            kind,
            list,
            candidates: candidates.len(),
            results: Vec::new(),
            running: true,
        };
        vec![
            Message::Search(search),
            window,
            Message::Effect(Effect::StartSuggestions(SuggestRequest {
                base,
                kind,
                list,
                candidates,
            })),
        ]
    }
}

/// Opens the input line for `purpose`, starting with `text`.
fn input(purpose: InputPurpose, text: &str) -> Vec<Message> {
    vec![Message::Open(Overlay::Input(Input {
        purpose,
        text: text.to_string(),
    }))]
}

fn item(editor: &Editor, row: &Row) -> ListItem<'static> {
    let vocabulary = &editor.state.vocabulary;
    let line = match row {
        Row::Template => Line::from(vec![
            Span::styled("template ", Style::new().fg(Color::DarkGray)),
            Span::raw(vocabulary.template.clone()),
        ]),
        Row::Continuous => Line::from(vec![
            Span::styled("continuous ", Style::new().fg(Color::DarkGray)),
            Span::raw(format!(
                "{} of {} trained (+/-)",
                vocabulary.continuous, editor.continuous_trained
            )),
        ]),
        Row::List(kind, list) => {
            let off = editor.state.disabled.contains(&(*kind, *list));
            let mut style = Style::new()
                .fg(type_color(*kind))
                .add_modifier(Modifier::BOLD);
            if off {
                style = style.add_modifier(Modifier::DIM | Modifier::CROSSED_OUT);
            }
            Line::from(vec![
                Span::styled(format!("{kind}.{list}"), style),
                Span::raw(if off { "  off" } else { "" }),
            ])
        }
        Row::Word(kind, list, i) => {
            let off = editor.state.disabled.contains(&(*kind, *list));
            let word = editor
                .word(*kind, *list, *i)
                .unwrap_or_default()
                .to_string();
            let style = if off {
                Style::new().add_modifier(Modifier::DIM)
            } else {
                Style::new()
            };
            Line::from(Span::styled(format!("  {word}"), style))
        }
    };
    ListItem::new(line)
}

#[cfg(test)]
mod tests {
    use crate::data::tags::EntityType::Per;
    use crate::prompts::WordList;
    use crate::tui::app::Action;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::components::overlays::Overlay;
    use crate::tui::test_support::{
        command, loaded, open_editor_at_per_labels, run, screen, typed,
    };
    use std::collections::BTreeMap;

    #[test]
    fn an_edit_sends_the_vocabulary_and_undo_redo_walk_back_and_forth() {
        let mut app = loaded();
        open_editor_at_per_labels(&mut app);
        command(&mut app, Command::AddWord);
        typed(&mut app, "athlete");
        let effects = command(&mut app, Command::Open);
        let Some(Effect::SetVocabulary(sent)) = effects.first() else {
            panic!("expected the vocabulary to be sent, got {effects:?}");
        };
        assert_eq!(sent.types[&Per].labels, ["person", "athlete"]);
        assert_eq!(effects.len(), 1, "the continuous count did not change");
        assert!(app.unsaved());
        let effects = command(&mut app, Command::Undo);
        assert!(
            matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person"])
        );
        assert!(!app.unsaved());
        command(&mut app, Command::Redo);
        assert!(app.unsaved());
        assert_eq!(
            command(&mut app, Command::FewerContinuous),
            [Effect::SetContinuous(1)]
        );
    }

    #[test]
    fn invalid_edits_are_refused_with_a_message_and_change_nothing() {
        let mut app = loaded();
        open_editor_at_per_labels(&mut app);
        let before = app.editor.vocabulary.clone().unwrap().state;
        command(&mut app, Command::AddWord);
        typed(&mut app, "Player");
        assert!(command(&mut app, Command::Open).is_empty());
        assert!(
            app.shared.message.as_deref().unwrap().contains("twice"),
            "{:?}",
            app.shared.message
        );
        command(&mut app, Command::AddWord);
        assert!(command(&mut app, Command::Open).is_empty(), "an empty word");
        command(&mut app, Command::EditTemplate);
        for _ in 0.."an image of a {}".len() {
            run(&mut app, Action::Backspace);
        }
        typed(&mut app, "a photo");
        assert!(command(&mut app, Command::Open).is_empty());
        assert!(app.shared.message.as_deref().unwrap().contains("{}"));
        assert!(command(&mut app, Command::MoreContinuous).is_empty());
        assert!(app.shared.message.as_deref().unwrap().contains("retrain"));
        assert_eq!(app.editor.vocabulary.unwrap().state, before);
    }

    #[test]
    fn switching_a_list_off_scores_without_its_words_but_keeps_them() {
        let mut app = loaded();
        open_editor_at_per_labels(&mut app);
        let effects = command(&mut app, Command::ToggleList);
        assert!(
            matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels.is_empty())
        );
        let editor = app.editor.vocabulary.as_ref().unwrap();
        assert_eq!(editor.state.vocabulary.types[&Per].labels, ["person"]);
        let effects = command(&mut app, Command::ToggleList);
        assert!(
            matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person"])
        );
    }

    #[test]
    fn saving_over_the_checkpoints_prompts_needs_a_yes() {
        let mut app = loaded();
        app.shared.session.save_needs_confirm = true;
        assert!(command(&mut app, Command::Save).is_empty());
        assert_eq!(app.overlays.top(), Some(&Overlay::ConfirmOverwrite));
        command(&mut app, Command::Deny);
        assert_eq!(app.overlays.top(), None);
        command(&mut app, Command::Save);
        assert!(matches!(
            &command(&mut app, Command::Confirm)[..],
            [Effect::Save { .. }]
        ));
    }

    #[test]
    fn snapshot_editor_mid_edit() {
        let mut app = loaded();
        open_editor_at_per_labels(&mut app);
        command(&mut app, Command::AddWord);
        typed(&mut app, "athl");
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }

    fn suggestion(word: &str, delta: f64) -> crate::engine::suggest::Suggestion {
        crate::engine::suggest::Suggestion {
            word: word.into(),
            kind: Per,
            list: WordList::Labels,
            delta_f1: delta,
            delta_per_type: BTreeMap::from([(Per, delta)]),
            f1: 50.0 + delta,
        }
    }

    #[test]
    fn suggestions_search_the_editors_list_rank_as_they_come_and_enter_adds_the_word() {
        let mut app = loaded();
        assert!(
            command(&mut app, Command::Suggest).is_empty(),
            "not on a list yet"
        );
        open_editor_at_per_labels(&mut app);
        let effects = command(&mut app, Command::Suggest);
        let [Effect::StartSuggestions(request)] = &effects[..] else {
            panic!("{effects:?}");
        };
        assert_eq!((request.kind, request.list), (Per, WordList::Labels));
        assert_eq!(request.candidates, ["athlete", "fan"]);
        run(&mut app, Action::Suggested(suggestion("fan", -0.5)));
        run(&mut app, Action::Suggested(suggestion("athlete", 1.25)));
        let words: Vec<&str> = app
            .shared
            .suggestions
            .as_ref()
            .unwrap()
            .results
            .iter()
            .map(|s| s.word.as_str())
            .collect();
        assert_eq!(words, ["athlete", "fan"], "best first");
        assert_eq!(
            command(&mut app, Command::CancelRun),
            [Effect::StopSuggestions]
        );
        run(&mut app, Action::SuggestionsDone(None));
        let effects = command(&mut app, Command::Open);
        assert!(
            matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person", "athlete"])
        );
    }

    #[test]
    fn snapshot_suggestions() {
        let mut app = loaded();
        open_editor_at_per_labels(&mut app);
        command(&mut app, Command::Suggest);
        run(&mut app, Action::Suggested(suggestion("athlete", 1.25)));
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }
}
