//! The metrics panel: P/R/F1 overall and per type with ΔF1 against the checkpoint's
//! own vocabulary, and a gauge while a rescoring runs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Gauge, Paragraph, Row, Table};

use super::{Component, panel, type_color};
use crate::data::tags::EntityType;
use crate::eval::score::ClassScore;
use crate::eval::significance::Significance;
use crate::tui::app::{EngineState, Shared};

/// The metrics panel: no state of its own and no keys.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MetricsPanel;

/// ΔF1 in points (scores are percentages).
fn delta(value: Option<f64>) -> String {
    match value {
        Some(d) if d.abs() < 0.05 => "±0.0".into(),
        Some(d) => format!("{d:+.1}"),
        None => String::new(),
    }
}

fn row(name: &str, score: &ClassScore, delta_f1: Option<f64>, style: Style) -> Row<'static> {
    Row::new(vec![
        name.to_string(),
        format!("{:.1}", score.prf.precision),
        format!("{:.1}", score.prf.recall),
        format!("{:.1}", score.prf.f1),
        delta(delta_f1),
    ])
    .style(style)
}

/// B − A with its 95% paired-bootstrap interval and randomisation p-value.
fn significance_lines(significance: Option<&Significance>) -> Vec<Line<'static>> {
    let Some(s) = significance else {
        return vec![Line::styled(
            "B − A: waiting for both scorings",
            Style::new().fg(Color::DarkGray),
        )];
    };
    let [low, high] = s.interval;
    // An interval that holds 0 says the difference may be noise.
    let style = if low <= 0.0 && high >= 0.0 {
        Style::new().fg(Color::DarkGray)
    } else {
        Style::new().fg(Color::Yellow)
    };
    vec![
        Line::styled(
            format!(
                "B − A {:+.2}, 95% CI [{low:+.2}, {high:+.2}], p {:.3}",
                s.delta_f1, s.p_value
            ),
            style,
        ),
        Line::styled(
            format!("paired bootstrap, randomisation: {} rounds", s.resamples),
            Style::new().fg(Color::DarkGray),
        ),
    ]
}

impl Component for MetricsPanel {
    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let title = match &shared.compare {
            Some(compare) => format!(
                "split scores · Δ: A against its vocabulary, B ({}) against A",
                compare.checkpoint
            ),
            None => "split scores · Δ against the checkpoint's vocabulary".to_string(),
        };
        let block = panel(title, false);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let progress = match shared.engine {
            EngineState::Rescoring { done, total } => Some(("rescoring", done, total)),
            EngineState::Encoding { done, total } => Some(("encoding", done, total)),
            _ => None,
        };
        let [table_area, gauge_area] = Layout::vertical([
            Constraint::Min(0),
            Constraint::Length(u16::from(progress.is_some())),
        ])
        .areas(inner);
        if let Some((task, done, total)) = progress {
            let ratio = if total > 0 {
                done as f64 / total as f64
            } else {
                0.0
            };
            frame.render_widget(
                Gauge::default()
                    .gauge_style(Style::new().fg(Color::Cyan))
                    .ratio(ratio.clamp(0.0, 1.0))
                    .label(format!("{task} {done}/{total}")),
                gauge_area,
            );
        }
        let Some(scores) = &shared.scores else {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    "no scores yet",
                    Style::new().fg(Color::DarkGray),
                )),
                table_area,
            );
            return;
        };
        let report = &scores.report;
        let mut rows = vec![row(
            "all",
            &report.micro,
            scores.delta_f1,
            Style::new().add_modifier(Modifier::BOLD),
        )];
        for kind in EntityType::ALL {
            if let Some(score) = report.per_type.get(&kind) {
                rows.push(row(
                    kind.as_str(),
                    score,
                    scores.delta_per_type.get(&kind).copied(),
                    Style::new().fg(type_color(kind)),
                ));
            }
        }
        if let Some(compare) = &shared.compare {
            match compare.scores.as_ref() {
                Some(b) => {
                    let delta = b.report.micro.prf.f1 - report.micro.prf.f1;
                    rows.insert(
                        1,
                        row(
                            "B",
                            &b.report.micro,
                            Some(delta),
                            Style::new().add_modifier(Modifier::ITALIC),
                        ),
                    );
                }
                None => rows.insert(1, Row::new(vec!["B", "…"])),
            }
        }
        let widths = [
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
        ];
        let table = Table::new(rows, widths).header(
            Row::new(vec!["", "P", "R", "F1", "ΔF1"]).style(Style::new().fg(Color::DarkGray)),
        );
        let significance = shared.compare.as_ref().map(|c| c.significance);
        let [table_area, significance_area] = Layout::vertical([
            Constraint::Min(0),
            Constraint::Length(if significance.is_some() { 2 } else { 0 }),
        ])
        .areas(table_area);
        frame.render_widget(table, table_area);
        if let Some(significance) = significance {
            frame.render_widget(
                Paragraph::new(significance_lines(significance.as_ref()))
                    .wrap(ratatui::widgets::Wrap { trim: true }),
                significance_area,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::app::Command;
    use crate::tui::test_support::{b_views_tweet_1, command, compared_app, screen};

    #[test]
    fn snapshot_compare_mode() {
        let mut app = compared_app();
        command(&mut app, Command::Down);
        b_views_tweet_1(&mut app, 2);
        insta::assert_snapshot!(screen(&app, 110, 34).backend());
    }
}
