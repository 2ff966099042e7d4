//! The vocabulary editor: template, continuous count, and each type's three lists
//! with their words; switched-off lists are marked `off` and dimmed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};

use super::{focused, panel, type_color};
use crate::tui::app::{App, Focus};
use crate::tui::editor::{Editor, Row};

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let unsaved = if app.unsaved() { " [+]" } else { "" };
    let block = panel(format!("vocabulary{unsaved}"), focused(app, Focus::Editor));
    let Some(editor) = &app.editor else {
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
