//! The jobs panel: every run's state, epoch, loss and dev F1 live from its events, the
//! log tail of the selected run, and the results table of the newest group (mean ± std
//! over seeds, ΔF1 against the full model, the best of each column marked `*`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::{Component, Handled, Message, panel};
use crate::jobs::registry::State;
use crate::jobs::table::{Format, MeanStd, column_bests, is_best};
use crate::jobs::watch::JobsSnapshot;
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
        let [runs_area, log_area, results_area] = Layout::vertical([
            Constraint::Min(5),
            Constraint::Length(10),
            Constraint::Length(table_height.max(4)),
        ])
        .areas(area);
        self.draw_runs(shared, frame, runs_area);
        self.draw_log(frame, log_area);
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
            self.snapshot.group.as_deref().unwrap_or("no group yet")
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

    fn jobs_snapshot() -> crate::jobs::watch::JobsSnapshot {
        use crate::jobs::registry::State;
        use crate::jobs::table::{MeanStd, Row};
        use crate::jobs::watch::{JobsSnapshot, RunSummary};
        let run =
            |id: &str, variant: &str, state: State, epoch: usize, test: Option<f64>| RunSummary {
                id: id.into(),
                group: "demo-1".into(),
                variant: variant.into(),
                seed: 1,
                state,
                epoch,
                epochs: 20,
                loss: Some(0.01),
                dev_f1: Some(90.0),
                test_f1: test,
                log_tail: vec![format!("epoch {epoch}: train loss 0.0100")],
                dir: PathBuf::from(format!("runs/{id}")),
            };
        let row = |variant: &str, f1: f64, delta: f64| Row {
            variant: variant.into(),
            finished: 1,
            runs: 1,
            precision: Some(MeanStd { mean: f1, std: 0.5 }),
            recall: Some(MeanStd { mean: f1, std: 0.4 }),
            f1: Some(MeanStd { mean: f1, std: 0.3 }),
            delta_f1: Some(delta),
            p_value: None,
        };
        JobsSnapshot {
            runs: vec![
                run("r0001-full-s1", "full", State::Finished, 20, Some(94.9)),
                run("r0002-none-s1", "none", State::Running, 7, None),
                run("r0003-plain-s1", "plain", State::Queued, 0, None),
            ],
            group: Some("demo-1".into()),
            table: vec![row("full", 94.9, 0.0), row("none", 81.5, -13.4)],
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
