//! The jobs panel: every run's state, epoch, loss and dev F1 live from its events, the
//! log tail of the selected run, and the results table of the newest group (mean ± std
//! over seeds, ΔF1 against the full model, the best of each column marked `*`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{
    Axis, Chart, Dataset, GraphType, LegendPosition, Paragraph, Row, Table, TableState,
};

use super::{Component, Handled, Message, panel};
use crate::jobs::registry::{EpochPoint, State};
use crate::jobs::table::{Format, MeanStd, column_bests, is_best};
use crate::jobs::watch::{JobsSnapshot, RunSummary};
use crate::tui::app::{Command, Effect, Focus, Shared};

/// The jobs panel's state: shown or not, the registry as last read, the selected run.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobsPanel {
    /// The jobs panel replaces the main screen.
    pub shown: bool,
    pub snapshot: JobsSnapshot,
    pub cursor: usize,
}

impl Component for JobsPanel {
    /// The jobs panel's keys. It covers the other panels, so their keys do nothing
    /// here; only the ones that leave it, open another window or quit pass through.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        match command {
            Command::Quit
            | Command::Help
            | Command::Editor
            | Command::Jobs
            | Command::Ablations => Handled::NotConsumed,
            _ => Handled::Consumed(self.on_run(command, shared.page)),
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let table_height = (self.snapshot.table.len() as u16 + 3).min(area.height / 3);
        // The runs take what they need (up to a third); the curves the rest.
        let runs_height = (self.snapshot.runs.len() as u16 + 3).clamp(5, area.height / 3);
        let [runs_area, middle, results_area] = Layout::vertical([
            Constraint::Length(runs_height),
            Constraint::Min(12),
            Constraint::Length(table_height.max(4)),
        ])
        .areas(area);
        let [log_area, loss_area, f1_area] = Layout::horizontal([
            Constraint::Percentage(36),
            Constraint::Percentage(32),
            Constraint::Percentage(32),
        ])
        .areas(middle);
        self.draw_runs(shared, frame, runs_area);
        self.draw_log(frame, log_area);
        self.draw_curve(frame, loss_area, Curve::Loss);
        self.draw_curve(frame, f1_area, Curve::DevF1);
        self.draw_results(frame, results_area);
    }
}

impl JobsPanel {
    /// `J`: the jobs panel over the main screen, focused, or the examples back.
    pub(crate) fn toggle(&mut self) -> Vec<Message> {
        self.shown = !self.shown;
        let focus = if self.shown { Focus::Jobs } else { Focus::List };
        vec![Message::Focus(focus)]
    }

    /// The registry, read again; the cursor stays on a run.
    pub(crate) fn refresh(&mut self, snapshot: JobsSnapshot) {
        self.cursor = self.cursor.min(snapshot.runs.len().saturating_sub(1));
        self.snapshot = snapshot;
    }

    /// The panel closes and the examples take the keys.
    fn leave(&mut self) -> Message {
        self.shown = false;
        Message::Focus(Focus::List)
    }

    fn on_run(&mut self, command: Command, page: usize) -> Vec<Message> {
        let last = self.snapshot.runs.len().saturating_sub(1);
        match command {
            Command::Down => self.cursor = (self.cursor + 1).min(last),
            Command::Up => self.cursor = self.cursor.saturating_sub(1),
            Command::PageDown => self.cursor = (self.cursor + page).min(last),
            Command::PageUp => self.cursor = self.cursor.saturating_sub(page),
            Command::Top => self.cursor = 0,
            Command::Bottom => self.cursor = last,
            Command::Back => return vec![self.leave()],
            Command::ExportCsv => return vec![Message::Effect(Effect::ExportTable(Format::Csv))],
            Command::ExportMarkdown => {
                return vec![Message::Effect(Effect::ExportTable(Format::Md))];
            }
            Command::ExportLatex => {
                return vec![Message::Effect(Effect::ExportTable(Format::Latex))];
            }
            Command::CancelRun | Command::Open => return self.on_selected_run(command),
            _ => {}
        }
        Vec::new()
    }

    /// x cancels the run under the cursor; Enter loads a finished one's checkpoint.
    fn on_selected_run(&mut self, command: Command) -> Vec<Message> {
        let Some(run) = self.snapshot.runs.get(self.cursor) else {
            return Vec::new();
        };
        match (command, run.state) {
            (Command::CancelRun, state) if !state.is_final() => {
                vec![Message::Effect(Effect::CancelRun(run.id.clone()))]
            }
            (Command::Open, State::Finished) => {
                let load = Message::Effect(Effect::LoadCheckpoint(run.dir.clone()));
                vec![self.leave(), load]
            }
            (_, state) => vec![Message::Status(format!("{} is {}", run.id, state.as_str()))],
        }
    }

    fn draw_runs(&self, shared: &Shared, frame: &mut Frame, area: Rect) {
        let block = panel(
            format!(
                "runs ({}) · {}",
                self.snapshot.runs.len(),
                shared.session.runs_root.display()
            ),
            shared.focused(Focus::Jobs),
        );
        if self.snapshot.runs.is_empty() {
            let text = "no runs yet: r queues ablation retrains of this checkpoint";
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
        let rows = self.snapshot.runs.iter().map(|run| {
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
        let mut state = TableState::default().with_selected(Some(self.cursor));
        frame.render_stateful_widget(table, area, &mut state);
    }

    fn draw_log(&self, frame: &mut Frame, area: Rect) {
        let run = self.snapshot.runs.get(self.cursor);
        let title = run.map_or("log".into(), |r| format!("log of {}", r.id));
        let lines: Vec<Line> = run
            .map(|r| r.log_tail.iter().map(|l| Line::raw(l.clone())).collect())
            .unwrap_or_default();
        frame.render_widget(Paragraph::new(lines).block(panel(title, false)), area);
    }

    /// The selected run's curve with the other seeds of its variant (in its group) drawn
    /// dim beneath it, and its best epoch marked.
    fn draw_curve(&self, frame: &mut Frame, area: Rect, curve: Curve) {
        let Some(selected) = self.snapshot.runs.get(self.cursor) else {
            frame.render_widget(panel(curve.name(), false), area);
            return;
        };
        let seeds: Vec<&RunSummary> = self
            .snapshot
            .runs
            .iter()
            .filter(|r| r.group == selected.group && r.variant == selected.variant)
            .filter(|r| r.id != selected.id)
            .chain([selected])
            .collect();
        let points: Vec<Vec<(f64, f64)>> = seeds
            .iter()
            .map(|run| {
                let to_point = |p: &EpochPoint| (p.epoch as f64, curve.value(p));
                run.curve.iter().map(to_point).collect()
            })
            .collect();
        let best: Vec<(f64, f64)> = selected
            .best_epoch
            .and_then(|epoch| selected.curve.iter().find(|p| p.epoch == epoch))
            .map(|p| (p.epoch as f64, curve.value(p)))
            .into_iter()
            .collect();
        let title = match best.first() {
            Some((epoch, _)) => format!("{} · {} · best {epoch}", curve.name(), selected.variant),
            None => format!("{} · {}", curve.name(), selected.variant),
        };
        let block = panel(title, false);
        if points.iter().all(Vec::is_empty) {
            let text = Line::styled("no epoch finished yet", Style::new().fg(Color::DarkGray));
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
        let mut datasets: Vec<Dataset> = seeds
            .iter()
            .zip(&points)
            .map(|(run, data)| {
                let style = if run.id == selected.id {
                    Style::new().fg(Color::Cyan)
                } else {
                    Style::new().fg(Color::DarkGray)
                };
                Dataset::default()
                    .name(format!("s{}", run.seed))
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(style)
                    .data(data)
            })
            .collect();
        if !best.is_empty() {
            datasets.push(
                Dataset::default()
                    .name("best")
                    .marker(Marker::Block)
                    .graph_type(GraphType::Scatter)
                    .style(Style::new().fg(Color::Yellow))
                    .data(&best),
            );
        }
        let epochs = seeds.iter().map(|r| r.epochs).max().unwrap_or(1).max(2) as f64;
        let range = curve.range(points.iter().flatten().map(|(_, y)| *y));
        frame.render_widget(curve.chart(datasets, block, epochs, range), area);
    }

    fn draw_results(&self, frame: &mut Frame, area: Rect) {
        let table = &self.snapshot.table;
        let bests = column_bests(table);
        let rows = table.iter().map(|row| {
            Row::new(vec![
                row.variant.clone(),
                format!("{}/{}", row.finished, row.runs),
                cell(row.precision, bests[0]),
                cell(row.recall, bests[1]),
                cell(row.f1, bests[2]),
                row.delta_f1.map_or("–".into(), |d| format!("{d:+.2}")),
                row.p_value.map_or("–".into(), |p| format!("{p:.3}")),
            ])
        });
        let widths = [
            Constraint::Length(20),
            Constraint::Length(6),
            Constraint::Length(15),
            Constraint::Length(15),
            Constraint::Length(15),
            Constraint::Length(7),
            Constraint::Length(6),
        ];
        let title = format!(
            "results · {} · * best · p: randomisation against full · c CSV, m Markdown, t LaTeX",
            self.snapshot.group.as_deref().unwrap_or("no group yet")
        );
        let header = Row::new(vec!["variant", "runs", "P", "R", "F1", "ΔF1", "p"])
            .style(Style::new().add_modifier(Modifier::BOLD));
        frame.render_widget(
            Table::new(rows, widths)
                .header(header)
                .block(panel(title, false)),
            area,
        );
    }
}

/// The two curves of a run.
#[derive(Debug, Clone, Copy)]
enum Curve {
    Loss,
    DevF1,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::Loss => "loss",
            Curve::DevF1 => "dev F1",
        }
    }

    fn value(self, point: &EpochPoint) -> f64 {
        match self {
            Curve::Loss => point.train_loss,
            Curve::DevF1 => point.dev_f1,
        }
    }

    /// Where the legend hides the least: a loss falls from the top left, F1 rises to
    /// the top right.
    fn legend_position(self) -> LegendPosition {
        match self {
            Curve::Loss => LegendPosition::TopRight,
            Curve::DevF1 => LegendPosition::BottomRight,
        }
    }

    /// The chart of `datasets` over epochs 1..=`epochs` and the y `range`.
    fn chart<'a>(
        self,
        datasets: Vec<Dataset<'a>>,
        block: ratatui::widgets::Block<'a>,
        epochs: f64,
        (low, high): (f64, f64),
    ) -> Chart<'a> {
        let axis_style = Style::new().fg(Color::DarkGray);
        Chart::new(datasets)
            .block(block)
            .x_axis(
                Axis::default()
                    .style(axis_style)
                    .bounds([1.0, epochs])
                    .labels(["1".to_string(), format!("{epochs}")]),
            )
            .y_axis(
                Axis::default()
                    .style(axis_style)
                    .bounds([low, high])
                    .labels([self.label(low), self.label(high)]),
            )
            .legend_position(Some(self.legend_position()))
            .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
    }

    /// The y range of the chart: the values' span with a margin so that a flat line
    /// shows, never below 0 (losses, F1) nor above 100 (F1).
    fn range(self, values: impl Iterator<Item = f64>) -> (f64, f64) {
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !low.is_finite() {
            return (0.0, 1.0);
        }
        let ceiling = match self {
            Curve::Loss => f64::INFINITY,
            Curve::DevF1 => 100.0,
        };
        let margin = ((high - low) * 0.05).max(1e-3);
        ((low - margin).max(0.0), (high + margin).min(ceiling))
    }

    fn label(self, value: f64) -> String {
        match self {
            Curve::Loss => format!("{value:.3}"),
            Curve::DevF1 => format!("{value:.1}"),
        }
    }
}

fn state_style(state: State) -> Style {
    match state {
        State::Running => Style::new().fg(Color::Cyan),
        State::Requeued => Style::new().fg(Color::Yellow),
        State::Finished => Style::new().fg(Color::Green),
        State::Failed | State::Interrupted => Style::new().fg(Color::Red),
        State::Queued | State::Cancelled => Style::new().fg(Color::DarkGray),
    }
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
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

#[cfg(test)]
mod tests {
    use crate::tui::app::Action;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::app::Focus;
    use crate::tui::app::update;
    use crate::tui::test_support::{command, loaded, run, screen};
    use std::path::PathBuf;

    /// A learning curve: the loss falls, dev F1 rises to a plateau that `shift` moves.
    fn curve(epochs: usize, shift: f64) -> Vec<crate::jobs::registry::EpochPoint> {
        (1..=epochs)
            .map(|epoch| crate::jobs::registry::EpochPoint {
                epoch,
                train_loss: 1.0 / epoch as f64,
                dev_f1: 90.0 - 40.0 / epoch as f64 + shift / 10.0,
            })
            .collect()
    }

    fn jobs_snapshot() -> crate::jobs::watch::JobsSnapshot {
        use crate::jobs::registry::State;
        use crate::jobs::table::{MeanStd, Row};
        use crate::jobs::watch::{JobsSnapshot, RunSummary};
        let run = |id: &str, variant: &str, state: State, epoch: usize, test: Option<f64>| {
            let seed: u64 = id
                .rsplit('s')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            RunSummary {
                seed,
                id: id.into(),
                group: "demo-1".into(),
                variant: variant.into(),
                state,
                epoch,
                epochs: 20,
                loss: Some(0.01),
                dev_f1: Some(90.0),
                test_f1: test,
                log_tail: vec![format!("epoch {epoch}: train loss 0.0100")],
                dir: PathBuf::from(format!("runs/{id}")),
                curve: curve(epoch, 20.0 * seed as f64),
                best_epoch: epoch.checked_sub(2),
            }
        };
        let row = |variant: &str, f1: f64, delta: f64, p_value: Option<f64>| Row {
            variant: variant.into(),
            finished: 1,
            runs: 1,
            precision: Some(MeanStd { mean: f1, std: 0.5 }),
            recall: Some(MeanStd { mean: f1, std: 0.4 }),
            f1: Some(MeanStd { mean: f1, std: 0.3 }),
            delta_f1: Some(delta),
            p_value,
            per_type_f1: Default::default(),
        };
        JobsSnapshot {
            runs: vec![
                run("r0001-full-s1", "full", State::Finished, 20, Some(94.9)),
                run("r0002-none-s1", "none", State::Running, 7, None),
                run("r0004-none-s2", "none", State::Finished, 20, Some(80.1)),
                run("r0003-plain-s1", "plain", State::Queued, 0, None),
            ],
            group: Some("demo-1".into()),
            table: vec![
                row("full", 94.9, 0.0, None),
                row("none", 81.5, -13.4, Some(0.001)),
            ],
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_jobs_panel_cancels_running_runs_and_loads_finished_ones() {
        let mut app = loaded();
        run(&mut app, Action::Jobs(jobs_snapshot()));
        command(&mut app, Command::Jobs);
        assert_eq!(app.shared.focus, Focus::Jobs);
        assert!(
            command(&mut app, Command::CancelRun).is_empty(),
            "finished: nothing to cancel"
        );
        command(&mut app, Command::Down);
        assert_eq!(
            command(&mut app, Command::CancelRun),
            [Effect::CancelRun("r0002-none-s1".into())]
        );
        assert!(command(&mut app, Command::Open).is_empty(), "still running");
        assert_eq!(
            command(&mut app, Command::ExportCsv),
            [Effect::ExportTable(crate::jobs::table::Format::Csv)]
        );
        command(&mut app, Command::Top);
        assert_eq!(
            command(&mut app, Command::Open),
            [Effect::LoadCheckpoint(PathBuf::from("runs/r0001-full-s1"))]
        );
        assert!(!app.jobs.shown);
    }

    #[test]
    fn snapshot_jobs_panel() {
        let mut app = loaded();
        run(&mut app, Action::Jobs(jobs_snapshot()));
        command(&mut app, Command::Jobs);
        command(&mut app, Command::Down);
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }

    #[test]
    fn queueing_and_cancelling_report_back_in_the_status_bar() {
        let mut app = loaded();
        assert!(update(&mut app, Action::Queued(Ok(3))).is_empty());
        assert_eq!(
            app.shared.message.as_deref(),
            Some("queued 3 runs (J shows them)")
        );
        update(&mut app, Action::Queued(Err("no runs folder".into())));
        assert_eq!(
            app.shared.message.as_deref(),
            Some("cannot queue the runs: no runs folder")
        );
        let id = "r0002-none-s1".to_string();
        update(
            &mut app,
            Action::Cancelled {
                id: id.clone(),
                result: Ok(()),
            },
        );
        assert_eq!(
            app.shared.message.as_deref(),
            Some("cancelling r0002-none-s1")
        );
        update(
            &mut app,
            Action::Cancelled {
                id,
                result: Err("scancel failed".into()),
            },
        );
        assert_eq!(
            app.shared.message.as_deref(),
            Some("cannot cancel r0002-none-s1: scancel failed")
        );
    }
}
