//! The jobs panel: every run's state, epoch, loss and dev F1 live from its events, the
//! log tail of the selected run, and the results table of the newest group (mean ± std
//! over seeds, ΔF1 against the full model, the best of each column marked `*`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::{focused, panel};
use crate::jobs::registry::State;
use crate::jobs::table::{MeanStd, column_bests, is_best};
use crate::tui::app::{App, Focus};

fn state_style(state: State) -> Style {
    match state {
        State::Running => Style::new().fg(Color::Cyan),
        State::Finished => Style::new().fg(Color::Green),
        State::Failed | State::Interrupted => Style::new().fg(Color::Red),
        State::Queued | State::Cancelled => Style::new().fg(Color::DarkGray),
    }
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let table_height = (app.jobs.table.len() as u16 + 3).min(area.height / 3);
    let [runs_area, log_area, results_area] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(10),
        Constraint::Length(table_height.max(4)),
    ])
    .areas(area);
    draw_runs(app, frame, runs_area);
    draw_log(app, frame, log_area);
    draw_results(app, frame, results_area);
}

fn draw_runs(app: &App, frame: &mut Frame, area: Rect) {
    let block = panel(
        format!(
            "runs ({}) · {}",
            app.jobs.runs.len(),
            app.session.runs_root.display()
        ),
        focused(app, Focus::Jobs),
    );
    if app.jobs.runs.is_empty() {
        let text = "no runs yet: r queues ablation retrains of this checkpoint";
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let rows = app.jobs.runs.iter().map(|run| {
        Row::new(vec![
            run.id.clone(),
            run.state.as_str().to_string(),
            format!("{}/{}", run.epoch, run.epochs),
            number(run.loss, 4),
            number(run.dev_f1, 2),
            number(run.test_f1, 2),
        ])
        .style(state_style(run.state))
    });
    let widths = [
        Constraint::Min(24),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let header = Row::new(vec!["run", "state", "epoch", "loss", "dev F1", "test F1"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(app.jobs_cursor));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_log(app: &App, frame: &mut Frame, area: Rect) {
    let run = app.jobs.runs.get(app.jobs_cursor);
    let title = run.map_or("log".into(), |r| format!("log of {}", r.id));
    let lines: Vec<Line> = run
        .map(|r| r.log_tail.iter().map(|l| Line::raw(l.clone())).collect())
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(lines).block(panel(title, false)), area);
}

fn cell(value: Option<MeanStd>, best: Option<f64>) -> String {
    match value {
        Some(m) => {
            let mark = if is_best(m.mean, best) { "*" } else { " " };
            format!("{:.2} ± {:.2}{mark}", m.mean, m.std)
        }
        None => "–".into(),
    }
}

fn draw_results(app: &App, frame: &mut Frame, area: Rect) {
    let table = &app.jobs.table;
    let bests = column_bests(table);
    let rows = table.iter().map(|row| {
        Row::new(vec![
            row.variant.clone(),
            format!("{}/{}", row.finished, row.runs),
            cell(row.precision, bests[0]),
            cell(row.recall, bests[1]),
            cell(row.f1, bests[2]),
            row.delta_f1.map_or("–".into(), |d| format!("{d:+.2}")),
        ])
    });
    let widths = [
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Length(15),
        Constraint::Length(15),
        Constraint::Length(15),
        Constraint::Length(7),
    ];
    let title = format!(
        "results · {} · * best · c CSV, m Markdown",
        app.jobs.group.as_deref().unwrap_or("no group yet")
    );
    let header = Row::new(vec!["variant", "runs", "P", "R", "F1", "ΔF1"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(panel(title, false)),
        area,
    );
}
