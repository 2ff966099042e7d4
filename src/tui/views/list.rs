//! The example list: index, marks (✗ errors, ∅ no image), text preview.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};

use super::{clip, focused, panel};
use crate::tui::app::{App, EngineState, Focus};

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let data = app.filter_data();
    let count = data
        .count(app.list.filter)
        .map_or("…".to_string(), |c| c.to_string());
    let mut title = format!(
        "examples · {} ({}/{})",
        app.list.filter.label(),
        count,
        app.tweets.len()
    );
    if !app.list.query.is_empty() {
        title.push_str(&format!(" · /{}", app.list.query));
    }
    let block = panel(title, focused(app, Focus::List));
    if app.tweets.is_empty() {
        let text = match app.engine {
            EngineState::Failed => "the dataset could not be loaded (see the status bar)",
            _ => "loading the checkpoint and the split…",
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    if app.list.visible.is_empty() {
        let text = if app.list.filter.needs_scores() && app.scores.is_none() {
            "waiting for the first scoring…"
        } else {
            "no tweet matches"
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let width = area.width.saturating_sub(9) as usize;
    let items: Vec<ListItem> = app
        .list
        .visible
        .iter()
        .map(|&i| item(app, i, width))
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶");
    let mut state = ListState::default().with_selected(Some(app.list.cursor));
    frame.render_stateful_widget(list, area, &mut state);
}

fn item(app: &App, index: usize, width: usize) -> ListItem<'static> {
    let tweet = &app.tweets[index];
    let errors = app
        .scores
        .as_ref()
        .and_then(|s| s.tweet_errors.get(index))
        .map_or(0, Vec::len);
    let error_mark = if errors > 0 {
        Span::styled("✗", Style::new().fg(Color::Red))
    } else {
        Span::raw(" ")
    };
    let image_mark = if tweet.image_path.is_none() {
        Span::styled("∅", Style::new().fg(Color::DarkGray))
    } else {
        Span::raw(" ")
    };
    ListItem::new(Line::from(vec![
        Span::styled(format!("{index:>4} "), Style::new().fg(Color::DarkGray)),
        error_mark,
        image_mark,
        Span::raw(" "),
        Span::raw(clip(&tweet.words.join(" "), width)),
    ]))
}
