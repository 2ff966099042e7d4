//! Small windows over the screen: the filter menu, the input line, and the questions
//! (quit with unsaved edits, overwrite the checkpoint's prompts).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Clear, List, ListItem, ListState, Paragraph};

use super::{centered, panel};
use crate::jobs::variant::Variant;
use crate::tui::app::{App, Overlay};
use crate::tui::filter::Filter;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    match &app.overlay {
        Some(Overlay::FilterMenu { cursor }) => filter_menu(app, *cursor, frame, area),
        Some(Overlay::Input(input)) => {
            let rect = centered(area, 60, 3);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(format!("{}▏", input.text)).block(panel(
                    format!("{} · Enter accepts, Esc cancels", input.purpose.title()),
                    true,
                )),
                rect,
            );
        }
        Some(Overlay::ConfirmQuit) => question(
            frame,
            area,
            "quit?",
            &[
                "The vocabulary has unsaved edits.",
                "",
                "s save   y quit without saving   n stay",
            ],
        ),
        Some(Overlay::ConfirmOverwrite) => question(
            frame,
            area,
            "overwrite?",
            &[
                "This overwrites the checkpoint's own prompts.toml.",
                "",
                "y overwrite   n keep it",
            ],
        ),
        Some(Overlay::Ablation {
            cursor,
            chosen,
            seeds,
        }) => ablation(*cursor, chosen, *seeds, frame, area),
        Some(Overlay::Help) | None => {}
    }
}

fn question(frame: &mut Frame, area: Rect, title: &str, text: &[&str]) {
    let rect = centered(area, 56, text.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let lines: Vec<Line> = text.iter().map(|t| Line::raw(t.to_string())).collect();
    frame.render_widget(Paragraph::new(lines).block(panel(title, true)), rect);
}

fn filter_menu(app: &App, cursor: usize, frame: &mut Frame, area: Rect) {
    let data = app.filter_data();
    let filters = Filter::all();
    let items: Vec<ListItem> = filters
        .iter()
        .map(|&filter| {
            let count = data.count(filter).map_or("…".into(), |c| c.to_string());
            ListItem::new(format!("{:<26}{count:>6}", filter.label()))
        })
        .collect();
    let rect = centered(area, 36, filters.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let list = List::new(items)
        .block(panel("filter", true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut state);
}

fn ablation(cursor: usize, chosen: &[bool], seeds: usize, frame: &mut Frame, area: Rect) {
    let variants = Variant::menu();
    let items: Vec<ListItem> = variants
        .iter()
        .zip(chosen)
        .map(|(variant, chosen)| {
            let mark = if *chosen { "[x]" } else { "[ ]" };
            ListItem::new(format!("{mark} {variant}"))
        })
        .collect();
    let rect = centered(area, 52, variants.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let title = format!("queue retrains · {seeds} seeds each (+/-) · Space, Enter");
    let list = List::new(items)
        .block(panel(title, true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut state);
}
