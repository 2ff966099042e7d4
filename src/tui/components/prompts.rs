//! The prompt panel: each prompt's similarity a_i to the image in view as a bar,
//! highest first, coloured by entity type and labelled by word and list (continuous
//! prompts as `#k`); beside it, the selected word's attention over the prompts' clues.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::{Component, Handled, Message, clip, panel, type_color};
use crate::engine::{AttributionView, PromptScore, TweetView};
use crate::model::prompts::PromptSource;
use crate::tui::app::{Command, Shared};

/// The prompt panel's state: the last leave-one-prompt-out attribution (`a` in the
/// tweet view), shown while its span is under the cursor.
#[derive(Debug, Clone, Default)]
pub(crate) struct PromptsPanel {
    pub attribution: Option<AttributionView>,
    /// The prompt whose a_i over the split is drawn (its index in the bank).
    pub selected: Option<usize>,
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
    /// `p` and `P` in the tweet view: the next or previous prompt by a_i.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        let step = match command {
            Command::NextPrompt => 1,
            Command::PreviousPrompt => -1,
            _ => return Handled::NotConsumed,
        };
        let Some(view) = shared.current_view().filter(|v| !v.prompts.is_empty()) else {
            return Handled::Consumed(vec![Message::Status("this tweet has no prompts".into())]);
        };
        let order = by_similarity(view);
        let rank = self
            .selected
            .and_then(|s| order.iter().position(|&i| i == s))
            .map_or(if step > 0 { 0 } else { order.len() - 1 }, |r| {
                (r as isize + step).rem_euclid(order.len() as isize) as usize
            });
        self.selected = Some(order[rank]);
        Handled::Consumed(Vec::new())
    }

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
        frame.render_widget(block, area);
        let spread = view.and_then(|view| self.spread(view, shared));
        let [list_area, spread_area] = Layout::vertical([
            Constraint::Min(0),
            Constraint::Length(if spread.is_some() { 4 } else { 0 }),
        ])
        .areas(inner);
        let lines = match view {
            None => vec![Line::styled("computing…", Style::new().fg(Color::DarkGray))],
            Some(view) if view.prompts.is_empty() => vec![Line::styled(
                "no image, so no prompt similarities (text-only)",
                Style::new().fg(Color::DarkGray),
            )],
            Some(view) => prompt_lines(
                view,
                self.selected,
                shared.word_cursor,
                attribution,
                inner.width as usize,
            ),
        };
        frame.render_widget(Paragraph::new(lines), list_area);
        if let Some(spread) = spread {
            spread.draw(frame, spread_area);
        }
    }
}

/// The selected prompt's a_i over the split's tweets with an image, as a histogram,
/// with this tweet's value marked beneath it.
struct Spread {
    label: String,
    color: Color,
    values: Vec<f32>,
    this_tweet: f32,
}

impl Spread {
    fn draw(&self, frame: &mut Frame, area: Rect) {
        let [title_area, bars_area, axis_area] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(2),
            Constraint::Length(1),
        ])
        .areas(area);
        let low = self.values.iter().copied().fold(f32::INFINITY, f32::min);
        let high = self
            .values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let [low_label, high_label] = [low, high].map(|v| format!("{v:.3}"));
        let bins = usize::from(bars_area.width).max(1);
        // Log counts: most tweets sit near 0 for most prompts, and one tall bin would
        // flatten the rest of the spread.
        let heights: Vec<u64> = histogram(&self.values, low, high, bins)
            .into_iter()
            .map(|count| ((count as f64).ln_1p() * 100.0).round() as u64)
            .collect();
        let tail = format!(" a_i over {} tweets, log count", self.values.len());
        let room = usize::from(title_area.width).saturating_sub(tail.chars().count() + 2);
        let title = format!("«{}»{tail}", clip(&self.label, room.max(4)));
        frame.render_widget(Line::styled(title, Style::new().fg(self.color)), title_area);
        frame.render_widget(
            Sparkline::default()
                .data(&heights)
                .style(Style::new().fg(self.color)),
            bars_area,
        );
        let at = bin_of(self.this_tweet, low, high, bins);
        let width = usize::from(axis_area.width);
        let mut axis = format!("{low_label:<width$}");
        axis.replace_range(width.saturating_sub(high_label.len()).., &high_label);
        let marker = format!("▲{:.3}", self.this_tweet);
        let start = at.min(width.saturating_sub(marker.chars().count()));
        let axis: String = axis
            .chars()
            .take(start)
            .chain(marker.chars())
            .chain(axis.chars().skip(start + marker.chars().count()))
            .collect();
        frame.render_widget(
            Line::styled(axis, Style::new().fg(Color::DarkGray)),
            axis_area,
        );
    }
}

/// Counts of `values` in `bins` equal bins over [low, high].
fn histogram(values: &[f32], low: f32, high: f32, bins: usize) -> Vec<u64> {
    let mut counts = vec![0; bins];
    for &value in values {
        counts[bin_of(value, low, high, bins)] += 1;
    }
    counts
}

fn bin_of(value: f32, low: f32, high: f32, bins: usize) -> usize {
    if high <= low {
        return 0;
    }
    let at = ((value - low) / (high - low) * bins as f32) as usize;
    at.min(bins - 1)
}

/// The prompts of `view`, highest a_i first.
fn by_similarity(view: &TweetView) -> Vec<usize> {
    let mut order: Vec<usize> = (0..view.prompts.len()).collect();
    order.sort_by(|&a, &b| {
        view.prompts[b]
            .similarity
            .total_cmp(&view.prompts[a].similarity)
    });
    order
}

impl PromptsPanel {
    /// The selected prompt's spread over the split, once the split is scored.
    fn spread(&self, view: &TweetView, shared: &Shared) -> Option<Spread> {
        let selected = self.selected?;
        let prompt = view.prompts.get(selected)?;
        let scores = shared.scores.as_ref()?;
        let values: Vec<f32> = scores
            .similarities
            .iter()
            .filter_map(|tweet| tweet.get(selected).copied())
            .collect();
        (!values.is_empty()).then(|| Spread {
            label: label(prompt),
            color: color(prompt),
            values,
            this_tweet: prompt.similarity,
        })
    }

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
    selected: Option<usize>,
    word: usize,
    attribution: Option<&AttributionView>,
    width: usize,
) -> Vec<Line<'static>> {
    let order = by_similarity(view);
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
            let label_style = if selected == Some(i) {
                style.add_modifier(Modifier::REVERSED)
            } else {
                style
            };
            let mut spans = vec![
                Span::styled(
                    format!("{:<label_width$}", clip(&label(prompt), label_width)),
                    label_style,
                ),
                Span::raw(" "),
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

    #[test]
    fn p_selects_prompts_by_similarity_and_wraps_around() {
        let mut app = loaded();
        command(&mut app, Command::NextPanel);
        assert_eq!(app.prompts.selected, None);
        command(&mut app, Command::NextPrompt);
        assert_eq!(app.prompts.selected, Some(0), "the highest a_i first");
        command(&mut app, Command::NextPrompt);
        assert_eq!(app.prompts.selected, Some(1));
        command(&mut app, Command::PreviousPrompt);
        command(&mut app, Command::PreviousPrompt);
        assert_eq!(app.prompts.selected, Some(5), "from the first to the last");
    }

    #[test]
    fn the_spread_counts_every_tweet_with_an_image_in_its_bin() {
        let counts = super::histogram(&[0.0, 0.5, 0.5, 0.9], 0.0, 0.9, 3);
        assert_eq!(counts, [1, 2, 1]);
        assert_eq!(super::histogram(&[0.3, 0.3], 0.3, 0.3, 4), [2, 0, 0, 0]);
    }

    #[test]
    fn snapshot_prompt_panel_with_the_spread_of_a_prompt() {
        let mut app = loaded();
        command(&mut app, Command::NextPanel);
        command(&mut app, Command::NextPrompt);
        command(&mut app, Command::NextPrompt);
        let mut terminal = Terminal::new(TestBackend::new(70, 12)).unwrap();
        terminal
            .draw(|frame| app.prompts.draw(frame, frame.area(), &app.shared))
            .unwrap();
        insta::assert_snapshot!(terminal.backend());
    }
}
