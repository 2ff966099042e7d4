//! The status bar: dataset, split, checkpoint, device, engine state, last message.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, EngineState};

pub(crate) fn engine_label(state: &EngineState) -> String {
    match state {
        EngineState::Loading => "loading".into(),
        EngineState::Encoding { done, total } => format!("encoding {done}/{total}"),
        EngineState::Rescoring { done, total } if *total > 0 => {
            format!("rescoring {done}/{total}")
        }
        EngineState::Rescoring { .. } => "rescoring".into(),
        EngineState::Idle => "idle".into(),
        EngineState::Failed => "failed".into(),
    }
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let session = &app.session;
    let unsaved = if app.unsaved() { " [+]" } else { "" };
    let mut spans = vec![
        Span::styled(
            format!(
                " {} · {} · {} · {} ",
                session.dataset, session.split, session.checkpoint, session.device
            ),
            Style::new().add_modifier(Modifier::REVERSED),
        ),
        Span::styled(
            format!(" {}{unsaved} ", engine_label(&app.engine)),
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(" "),
    ];
    match &app.message {
        Some(message) => spans.push(Span::raw(message.clone())),
        None => spans.push(Span::styled("? help", Style::new().fg(Color::DarkGray))),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
