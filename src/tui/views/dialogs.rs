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

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
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
        Some(Overlay::Confusion { row, col }) => confusion(app, *row, *col, frame, area),
        Some(Overlay::Suggestions { cursor }) => suggestions(app, *cursor, frame, area),
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
    let filters = app.filters();
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

/// The matrix: rows gold, columns predicted; a cell shows exact matches + errors.
fn confusion(app: &App, row: usize, col: usize, frame: &mut Frame, area: Rect) {
    use crate::eval::confusion::{Confusion, classes};
    use ratatui::text::Span;
    let rect = centered(area, 64, 12);
    frame.render_widget(Clear, rect);
    let block = panel(
        "confusion · rows gold, columns predicted · Enter lists",
        true,
    );
    let Some(scores) = &app.scores else {
        frame.render_widget(Paragraph::new("no scores yet").block(block), rect);
        return;
    };
    let per_type = &scores.report.per_type;
    let correct =
        crate::data::tags::EntityType::ALL.map(|k| per_type.get(&k).map_or(0, |s| s.counts.tp));
    let matrix = Confusion::new(&scores.tweet_errors, correct);
    let name = |c: Option<crate::data::tags::EntityType>| c.map_or("none", |k| k.as_str());
    let mut lines = vec![Line::raw(format!(
        "{:<8}{}",
        "gold\\pred",
        classes().map(|c| format!("{:>9}", name(c))).concat()
    ))];
    for (r, gold) in classes().into_iter().enumerate() {
        let mut spans = vec![Span::raw(format!("{:<8}", name(gold)))];
        for (c, pred) in classes().into_iter().enumerate() {
            let count = if gold.is_none() && pred.is_none() {
                "·".to_string()
            } else {
                matrix.count(gold, pred).to_string()
            };
            let style = if (r, c) == (row, col) {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            spans.push(Span::styled(format!("{count:>9}"), style));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(format!(
        "errors: {} (the diagonal adds exact matches)",
        matrix.total_errors()
    )));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// The suggestion search's table, best ΔF1 first, filling in as candidates are scored.
fn suggestions(app: &App, cursor: usize, frame: &mut Frame, area: Rect) {
    let Some(search) = &app.suggestions else {
        return;
    };
    let state = if search.running { "searching" } else { "done" };
    let title = format!(
        "suggestions for {}.{} · {}/{} {state} · Enter adds, x stops",
        search.kind,
        search.list,
        search.results.len(),
        search.candidates
    );
    let items: Vec<ListItem> = search
        .results
        .iter()
        .map(|s| {
            let per_type: Vec<String> = s
                .delta_per_type
                .iter()
                .filter(|(_, d)| d.abs() >= 0.005)
                .map(|(k, d)| format!("{k} {d:+.2}"))
                .collect();
            ListItem::new(format!(
                "{:<18} {:>+6.2}  {}",
                s.word,
                s.delta_f1,
                per_type.join(" ")
            ))
        })
        .collect();
    let rect = centered(area, 70, (search.candidates as u16 + 2).clamp(5, 20));
    frame.render_widget(Clear, rect);
    let list = List::new(items)
        .block(panel(title, true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut list_state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut list_state);
}
