//! The help overlay: every key of the view it was opened from, from the same tables the
//! keys are read with.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{centered, panel};
use crate::tui::app::App;
use crate::tui::keys;

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    // The help lists the keys of the view beneath it, not its own.
    let beneath = App {
        overlay: None,
        ..app.clone()
    };
    let mut lines = Vec::new();
    for (title, bindings) in keys::context(&beneath) {
        lines.push(Line::styled(
            title.to_string(),
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        ));
        for binding in bindings {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {:<9}", binding.label),
                    Style::new().fg(Color::Cyan),
                ),
                Span::raw(binding.help),
            ]));
        }
    }
    lines.push(Line::styled(
        "Esc or ? closes this help",
        Style::new().fg(Color::DarkGray),
    ));
    let height = lines.len() as u16 + 2;
    let rect = centered(area, 52, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(panel("keys", true)), rect);
}
