//! The tweet view: the words, gold spans on one line, predicted spans on the next, and
//! `^` under every word where they differ (readable without colour); under it, the class
//! probabilities of the candidate spans around the word under the cursor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::list::ExampleList;
use super::{Component, Handled, Message, panel, type_color};
use crate::data::spans::Span as EntitySpan;
use crate::data::tags::EntityType;
use crate::engine::TweetView;
use crate::model::span::{CLASSES, NONE_CLASS, ScoredSpan};
use crate::tui::app::{Command, Effect, Focus, Shared};

/// The tweet view's state: the word under the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TweetPanel {
    pub word_cursor: usize,
}

impl Component for TweetPanel {
    /// The tweet's keys: words left and right, `a` attributes the span under the
    /// cursor, Esc goes back to the list; the list's moves step to the next tweet.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        let messages = match command {
            Command::WordLeft => {
                self.word_cursor = self.word_cursor.saturating_sub(1);
                Vec::new()
            }
            Command::WordRight => {
                let words = shared.selected.map_or(0, |i| shared.tweets[i].words.len());
                self.word_cursor = (self.word_cursor + 1).min(words.saturating_sub(1));
                Vec::new()
            }
            Command::Attribute => self.attribute(shared),
            Command::Figure => match shared.current_view() {
                Some(view) => vec![Message::Effect(Effect::Figure(view.index))],
                None => vec![Message::Status("the tweet is still being scored".into())],
            },
            Command::Back => vec![Message::Focus(Focus::List)],
            _ if ExampleList::is_move(command) => vec![Message::StepList(command)],
            _ => return Handled::NotConsumed,
        };
        Handled::Consumed(messages)
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let Some(index) = shared.selected else {
            frame.render_widget(panel("tweet", false), area);
            return;
        };
        let tweet = &shared.tweets[index];
        let view = shared.current_view();
        let title = match &tweet.image_id {
            Some(id) => format!("tweet {index} · image {id}"),
            None => format!("tweet {index} · no image id"),
        };
        let block = panel(title, shared.focused(Focus::Tweet));
        let width = (area.width as usize).saturating_sub(2 + GUTTER).max(8);
        let words = &tweet.words;
        let predicted: Option<Vec<EntitySpan>> =
            view.map(|v| v.predicted.iter().map(|p| p.span).collect());
        let counterfactual =
            view.is_some_and(|v| v.image.choice != crate::engine::ImageChoice::Own);
        let own = shared.own_spans.get(&index).filter(|_| counterfactual);
        let cursor = self.word_cursor.min(words.len().saturating_sub(1));
        let show_cursor = (shared.focus == Focus::Tweet).then_some(cursor);
        let compared: Option<Vec<EntitySpan>> = shared.compare.as_ref().map(|c| {
            c.current_view(Some(index))
                .map(|v| v.predicted.iter().map(|p| p.span).collect())
                .unwrap_or_default()
        });
        let spans = SpanLines {
            gold: &tweet.gold,
            predicted: predicted
                .as_deref()
                .map_or(Predicted::Computing, Predicted::Spans),
            own: own.map(Vec::as_slice),
            compared: compared.as_deref(),
        };
        let (mut lines, cursor_line) = aligned_lines(words, &spans, width, show_cursor);
        if let Some(view) = view {
            lines.push(Line::raw(""));
            lines.extend(candidate_lines(words, &view.candidates, cursor));
            if view.truncated_words > 0 {
                lines.push(Line::raw(format!(
                    "({} words past the encoder's limit are not scored)",
                    view.truncated_words
                )));
            }
        }
        let inner_height = area.height.saturating_sub(2) as usize;
        let scroll = (cursor_line + 4).saturating_sub(inner_height);
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false })
                .scroll((scroll as u16, 0)),
            area,
        );
    }
}

impl TweetPanel {
    fn attribute(&self, shared: &Shared) -> Vec<Message> {
        let Some(view) = shared.current_view() else {
            return Vec::new();
        };
        let Some((start, end)) = span_at(view, self.word_cursor) else {
            return Vec::new();
        };
        if view.prompts.is_empty() {
            return vec![Message::Status(
                "no image, no prompts: nothing to attribute".into(),
            )];
        }
        vec![
            Message::Status("attributing: each prompt left out in turn…".into()),
            Message::Effect(Effect::Attribute {
                tweet: view.index,
                start,
                end,
            }),
        ]
    }
}

/// The span of `view` under word `word`: the predicted entity there, else the
/// candidate over the word most likely to be one.
pub(crate) fn span_at(view: &TweetView, word: usize) -> Option<(usize, usize)> {
    if let Some(p) = view
        .predicted
        .iter()
        .find(|p| p.span.start <= word && word < p.span.end)
    {
        return Some((p.span.start, p.span.end));
    }
    view.candidates
        .iter()
        .filter(|c| c.start <= word && word < c.end)
        .min_by(|a, b| a.probs[4].total_cmp(&b.probs[4]))
        .map(|c| (c.start, c.end))
}

/// Width of the line labels ("gold ", "pred ").
const GUTTER: usize = 5;

/// A word's place in a span: its type and whether the span starts there.
type Cell = Option<(EntityType, bool)>;

fn cells(spans: &[EntitySpan], words: usize) -> Vec<Cell> {
    let mut cells = vec![None; words];
    for span in spans {
        for (w, cell) in cells.iter_mut().enumerate().take(span.end).skip(span.start) {
            *cell = Some((span.kind, w == span.start));
        }
    }
    cells
}

/// What goes on the prediction line.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Predicted<'a> {
    Spans(&'a [EntitySpan]),
    /// The engine has not answered yet.
    Computing,
    /// No model: no prediction line.
    Absent,
}

/// The words with gold and predicted spans under them, in rows of `width` columns
/// (`show` prints these too).
pub(crate) fn text_lines(
    words: &[String],
    gold: &[EntitySpan],
    predicted: Predicted<'_>,
    width: usize,
    cursor: Option<usize>,
) -> Vec<Line<'static>> {
    let spans = SpanLines {
        gold,
        predicted,
        own: None,
        compared: None,
    };
    aligned_lines(words, &spans, width, cursor).0
}

/// The span lines under the words.
pub(crate) struct SpanLines<'a> {
    pub gold: &'a [EntitySpan],
    pub predicted: Predicted<'a>,
    /// The prediction with the tweet's own image, shown under a counterfactual one.
    pub own: Option<&'a [EntitySpan]>,
    /// The compared checkpoint's prediction (B), under A's.
    pub compared: Option<&'a [EntitySpan]>,
}

/// [`text_lines`] and the line where the cursor's row starts.
fn aligned_lines(
    words: &[String],
    spans: &SpanLines<'_>,
    width: usize,
    cursor: Option<usize>,
) -> (Vec<Line<'static>>, usize) {
    let predicted = spans.predicted;
    let gold = cells(spans.gold, words.len());
    let pred = match predicted {
        Predicted::Spans(spans) => Some(cells(spans, words.len())),
        Predicted::Computing | Predicted::Absent => None,
    };
    let own = spans.own.map(|spans| cells(spans, words.len()));
    let compared = spans.compared.map(|spans| cells(spans, words.len()));
    let pred_label = if compared.is_some() { "A" } else { "pred" };
    let mut lines = Vec::new();
    let mut cursor_line = 0;
    for row in rows(words, width) {
        if cursor.is_some_and(|c| row.contains(&c)) {
            cursor_line = lines.len();
        }
        lines.push(word_line(words, &row, cursor, &gold));
        lines.push(span_line("gold", words, &row, &gold));
        match &pred {
            Some(pred) => {
                lines.push(span_line(pred_label, words, &row, pred));
                lines.push(diff_line(words, &row, &gold, pred, &GOLD_VS_PRED));
                if let Some(compared) = &compared {
                    lines.push(span_line("B", words, &row, compared));
                    lines.push(diff_line(words, &row, &gold, compared, &GOLD_VS_PRED));
                }
                if let Some(own) = &own {
                    lines.push(span_line("own", words, &row, own));
                    lines.push(diff_line(words, &row, own, pred, &OWN_VS_PRED));
                }
            }
            None if matches!(predicted, Predicted::Computing) => lines.push(Line::styled(
                "pred computing…",
                Style::new().fg(Color::DarkGray),
            )),
            None => {}
        }
    }
    (lines, cursor_line)
}

/// Words grouped into rows that fit `width` columns.
fn rows(words: &[String], width: usize) -> Vec<Vec<usize>> {
    let mut rows = vec![Vec::new()];
    let mut used = 0;
    for (i, word) in words.iter().enumerate() {
        let w = word.chars().count() + 1;
        if used + w > width && used > 0 {
            rows.push(Vec::new());
            used = 0;
        }
        used += w;
        if let Some(row) = rows.last_mut() {
            row.push(i);
        }
    }
    rows
}

fn word_line(
    words: &[String],
    row: &[usize],
    cursor: Option<usize>,
    gold: &[Cell],
) -> Line<'static> {
    let mut spans = vec![Span::raw(" ".repeat(GUTTER))];
    for &i in row {
        let mut style = match gold[i] {
            Some((kind, _)) => Style::new().fg(type_color(kind)),
            None => Style::new(),
        };
        if cursor == Some(i) {
            style = style.add_modifier(Modifier::REVERSED);
        }
        spans.push(Span::styled(words[i].clone(), style));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

/// One span line: the type's name where a span starts, `─` along the rest of it.
fn span_line(label: &str, words: &[String], row: &[usize], cells: &[Cell]) -> Line<'static> {
    let mut spans = vec![Span::styled(
        format!("{label:<GUTTER$}"),
        Style::new().fg(Color::DarkGray),
    )];
    for (at, &i) in row.iter().enumerate() {
        let width = words[i].chars().count();
        let continues = row
            .get(at + 1)
            .is_some_and(|&next| matches!(cells[next], Some((_, false))) && cells[i].is_some());
        let (text, style) = match cells[i] {
            Some((kind, start)) => {
                let name = if start { kind.as_str() } else { "" };
                let mut text: String = name.chars().take(width).collect();
                while text.chars().count() < width {
                    text.push('─');
                }
                (text, Style::new().fg(type_color(kind)))
            }
            None => (" ".repeat(width), Style::new()),
        };
        spans.push(Span::styled(text, style));
        spans.push(Span::styled(
            if continues { "─" } else { " " },
            cells[i].map_or(Style::new(), |(kind, _)| Style::new().fg(type_color(kind))),
        ));
    }
    Line::from(spans)
}

/// `^` under each word whose gold and predicted tags differ.
/// How a marker line looks: its label when a word differs, its mark, its colour.
struct Marker {
    label: &'static str,
    mark: &'static str,
    color: Color,
}

const GOLD_VS_PRED: Marker = Marker {
    label: "  ≠  ",
    mark: "^",
    color: Color::Red,
};

const OWN_VS_PRED: Marker = Marker {
    label: "  ~  ",
    mark: "~",
    color: Color::Yellow,
};

fn diff_line(
    words: &[String],
    row: &[usize],
    a: &[Cell],
    b: &[Cell],
    marker: &Marker,
) -> Line<'static> {
    let differs = row.iter().any(|&i| a[i] != b[i]);
    let mut spans = vec![Span::styled(
        if differs { marker.label } else { "     " },
        Style::new().fg(marker.color),
    )];
    for &i in row {
        let width = words[i].chars().count();
        let text = if a[i] != b[i] { marker.mark } else { " " }.repeat(width);
        spans.push(Span::styled(
            text,
            Style::new().fg(marker.color).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

/// The candidate spans that cover the word under the cursor, most entity-like first.
fn candidate_lines(
    words: &[String],
    candidates: &[ScoredSpan],
    cursor: usize,
) -> Vec<Line<'static>> {
    let mut around: Vec<&ScoredSpan> = candidates
        .iter()
        .filter(|c| c.start <= cursor && cursor < c.end)
        .collect();
    around.sort_by(|a, b| a.probs[NONE_CLASS].total_cmp(&b.probs[NONE_CLASS]));
    let mut lines = vec![Line::styled(
        format!(
            "spans over «{}»: class probabilities",
            words.get(cursor).map_or("", String::as_str)
        ),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for candidate in around.iter().take(4) {
        let text = words[candidate.start..candidate.end].join(" ");
        let mut spans = vec![Span::raw(format!("{:<16} ", super::clip(&text, 16)))];
        for class in 0..CLASSES {
            let (name, style) = if class == NONE_CLASS {
                ("none", Style::new().fg(Color::DarkGray))
            } else {
                let kind = EntityType::ALL[class];
                (kind.as_str(), Style::new().fg(type_color(kind)))
            };
            let percent = (candidate.probs[class] * 100.0).round();
            spans.push(Span::styled(format!("{name} {percent:>3}% "), style));
        }
        lines.push(Line::from(spans));
    }
    lines
}

#[cfg(test)]
mod tests {
    use crate::engine::Event;
    use crate::tui::app::Action;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::app::update;
    use crate::tui::components::Component;
    use crate::tui::test_support::{command, loaded, run, screen, tweet_view};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn a_view_for_another_tweet_is_ignored() {
        let mut app = loaded();
        let stale = Box::new(tweet_view(2));
        update(
            &mut app,
            Action::Engine(Event::Tweet {
                generation: 9,
                view: stale,
            }),
        );
        assert_eq!(app.current_view().map(|v| v.index), Some(0));
    }

    #[test]
    fn snapshot_tweet_view_with_a_wrong_type_span_selected() {
        let mut app = loaded();
        command(&mut app, Command::Down);
        command(&mut app, Command::NextPanel);
        for _ in 0..3 {
            command(&mut app, Command::WordRight);
        }
        assert_eq!(
            app.tweet.word_cursor, 3,
            "on «Nova», gold OTHER, predicted PER"
        );
        insta::assert_snapshot!(screen(&app, 120, 36).backend());
    }

    #[test]
    fn a_asks_for_the_attribution_of_the_span_under_the_cursor_and_the_panel_shows_it() {
        use crate::engine::{AttributionView, PromptEffect};
        let mut app = loaded();
        command(&mut app, Command::NextPanel);
        for _ in 0..6 {
            command(&mut app, Command::WordRight);
        }
        assert_eq!(
            command(&mut app, Command::Attribute),
            [Effect::Attribute {
                tweet: 0,
                start: 6,
                end: 7
            }],
            "Austin, the predicted LOC under the cursor"
        );
        let view = app.current_view().unwrap().clone();
        let effects = view
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| PromptEffect {
                text: p.text.clone(),
                source: p.source.clone(),
                change: [-0.30, 0.05, -0.10, 0.0, 0.02, -0.01][i],
            })
            .collect();
        let attribution = AttributionView {
            tweet: 0,
            start: 6,
            end: 7,
            class: 1,
            probability: 0.8,
            effects,
        };
        run(
            &mut app,
            Action::Engine(Event::Attribution {
                generation: 3,
                view: Box::new(attribution),
            }),
        );
        let mut terminal = Terminal::new(TestBackend::new(70, 10)).unwrap();
        terminal
            .draw(|frame| app.prompts.draw(frame, frame.area(), &app.shared))
            .unwrap();
        insta::assert_snapshot!(terminal.backend());
    }
}
