//! The prompt panel: each prompt's similarity a_i to the image in view as a bar,
//! highest first, coloured by entity type and labelled by word and list (continuous
//! prompts as `#k`); beside it, the selected word's attention over the prompts' clues.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Component, clip, panel, type_color};
use crate::engine::{AttributionView, PromptScore, TweetView};
use crate::model::prompts::PromptSource;
use crate::tui::app::Shared;

/// The prompt panel's state: the last leave-one-prompt-out attribution (`a` in the
/// tweet view), shown while its span is under the cursor.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromptsPanel {
    pub attribution: Option<AttributionView>,
}

pub(crate) fn label(prompt: &PromptScore) -> String {
    match &prompt.source {
        PromptSource::Discrete { word, kind, list } => format!("{word} {kind}.{list}"),
        PromptSource::Continuous { index } => format!("#{index}"),
    }
}

fn color(prompt: &PromptScore) -> Color {
    match &prompt.source {
        PromptSource::Discrete { kind, .. } => type_color(*kind),
        PromptSource::Continuous { .. } => Color::Gray,
    }
}

/// `value` of `max` as a bar of up to `width` cells, in eighths.
fn bar(value: f32, max: f32, width: usize) -> String {
    const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let cells = if max > 0.0 {
        value / max * width as f32
    } else {
        0.0
    };
    let eighths = (cells.clamp(0.0, width as f32) * 8.0).round() as usize;
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        bar.push(EIGHTHS[eighths % 8 - 1]);
    }
    format!("{bar:<width$}")
}

impl Component for PromptsPanel {
    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let view = shared.current_view();
        let word = view.and_then(|v| v.words.get(shared.word_cursor).cloned());
        let count = view.map_or(String::new(), |v| format!(" ({})", v.prompts.len()));
        let attribution = self.current_attribution(shared);
        let title = match (&word, attribution) {
            (_, Some(a)) => {
                let class = crate::model::span::class_name(a.class);
                let words = view.map_or(String::new(), |v| v.words[a.start..a.end].join(" "));
                format!(
                    "prompts{count} · a_i │ Δp({class} «{}») without each",
                    clip(&words, 14)
                )
            }
            (Some(word), None) => format!(
                "prompts{count} · a_i │ clue attention of «{}»",
                clip(word, 12)
            ),
            (None, None) => format!("prompts{count} · a_i"),
        };
        let block = panel(title, false);
        let inner = block.inner(area);
        let lines = match view {
            None => vec![Line::styled("computing…", Style::new().fg(Color::DarkGray))],
            Some(view) if view.prompts.is_empty() => vec![Line::styled(
                "no image, so no prompt similarities (text-only)",
                Style::new().fg(Color::DarkGray),
            )],
            Some(view) => prompt_lines(view, shared.word_cursor, attribution, inner.width as usize),
        };
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }
}

impl PromptsPanel {
    /// The attribution of the span under the cursor, when it is the current one's.
    fn current_attribution(&self, shared: &Shared) -> Option<&AttributionView> {
        let attribution = self.attribution.as_ref()?;
        let span = shared
            .current_view()
            .and_then(|view| super::tweet::span_at(view, shared.word_cursor));
        let here = Some(attribution.tweet) == shared.selected
            && span == Some((attribution.start, attribution.end));
        here.then_some(attribution)
    }
}

/// A signed change as a bar: red when leaving the prompt out lowers the probability
/// (the prompt supported the class), green when it raises it.
fn signed_bar(change: f32, max: f32, width: usize) -> Span<'static> {
    let sign = if change < 0.0 { '-' } else { '+' };
    let color = if change < 0.0 {
        Color::Red
    } else {
        Color::Green
    };
    let text = format!("{sign}{}", bar(change.abs(), max, width.saturating_sub(1)));
    Span::styled(text, Style::new().fg(color))
}

fn prompt_lines(
    view: &TweetView,
    word: usize,
    attribution: Option<&AttributionView>,
    width: usize,
) -> Vec<Line<'static>> {
    let mut order: Vec<usize> = (0..view.prompts.len()).collect();
    order.sort_by(|&a, &b| {
        view.prompts[b]
            .similarity
            .total_cmp(&view.prompts[a].similarity)
    });
    let max = view.prompts[order[0]].similarity;
    let attention = view.clue_attention.get(word);
    let max_attention = attention.map_or(0.0, |a| a.iter().copied().fold(0.0, f32::max));
    let max_change = attribution.map_or(0.0, |a| {
        a.effects.iter().map(|e| e.change.abs()).fold(0.0, f32::max)
    });
    let longest = view.prompts.iter().map(|p| label(p).chars().count()).max();
    let label_width = longest.unwrap_or(0).min(width / 2).max(4);
    let bar_width = width.saturating_sub(label_width + 14) / 2;
    order
        .into_iter()
        .map(|i| {
            let prompt = &view.prompts[i];
            let style = Style::new().fg(color(prompt));
            let mut spans = vec![
                Span::styled(
                    format!("{:<label_width$} ", clip(&label(prompt), label_width)),
                    style,
                ),
                Span::styled(bar(prompt.similarity, max, bar_width), style),
                Span::raw(format!(" {:.3}", prompt.similarity)),
            ];
            if let Some(effect) = attribution.and_then(|a| a.effects.get(i)) {
                spans.push(Span::raw(" │"));
                spans.push(signed_bar(effect.change, max_change, bar_width));
            } else if let Some(value) = attention.and_then(|a| a.get(i)) {
                spans.push(Span::raw(" │"));
                spans.push(Span::styled(
                    bar(*value, max_attention, bar_width),
                    Style::new().fg(Color::Blue),
                ));
            }
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars_scale_to_the_largest_value_in_eighths() {
        assert_eq!(bar(1.0, 1.0, 4), "████");
        assert_eq!(bar(0.5, 1.0, 4), "██  ");
        assert_eq!(bar(1.0 / 32.0, 1.0, 4), "▏   ");
        assert_eq!(bar(0.0, 0.0, 3), "   ");
    }
    use crate::tui::app::Command;
    use crate::tui::components::Component;
    use crate::tui::test_support::{command, loaded};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn snapshot_prompt_panel_with_clue_attention() {
        let mut app = loaded();
        command(&mut app, Command::NextPanel);
        command(&mut app, Command::WordRight);
        let mut terminal = Terminal::new(TestBackend::new(70, 10)).unwrap();
        terminal
            .draw(|frame| app.prompts.draw(frame, frame.area(), &app.shared))
            .unwrap();
        insta::assert_snapshot!(terminal.backend());
    }
}
