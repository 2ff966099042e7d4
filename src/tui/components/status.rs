//! The status bar: dataset, split, checkpoint, device, engine state, last message.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Component;
use crate::tui::app::{EngineState, Shared};

/// The status bar: no state of its own and no keys.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StatusBar;

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

impl Component for StatusBar {
    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let session = &shared.session;
        let unsaved = if shared.unsaved { " [+]" } else { "" };
        let mut spans = vec![
            Span::styled(
                format!(
                    " {} · {} · {} · {} ",
                    session.dataset, session.split, session.checkpoint, session.device
                ),
                Style::new().add_modifier(Modifier::REVERSED),
            ),
            Span::styled(
                format!(" {}{unsaved} ", engine_label(&shared.engine)),
                Style::new().fg(Color::Black).bg(Color::Cyan),
            ),
            Span::raw(" "),
        ];
        match &shared.message {
            Some(message) => spans.push(Span::raw(message.clone())),
            None => spans.push(Span::styled("? help", Style::new().fg(Color::DarkGray))),
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
    }
}
