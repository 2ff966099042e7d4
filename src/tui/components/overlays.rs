//! Windows over the screen, a stack whose top takes the keys: the help, the filter
//! menu, the input line, the questions (quit with unsaved edits, overwrite the
//! checkpoint's prompts), the ablation dialog, the confusion matrix and the suggestions.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, List, ListItem, ListState, Paragraph};

use super::{Component, Handled, Message, centered, panel};
use crate::jobs::variant::Variant;
use crate::prompts::WordList;
use crate::tui::app::{Command, Effect, Focus, Shared};
use crate::tui::editor::Edit;
use crate::tui::filter::Filter;
use crate::tui::keys;

/// A window over the screen that takes the keys while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Overlay {
    Help,
    FilterMenu {
        cursor: usize,
    },
    ConfirmQuit,
    ConfirmOverwrite,
    Input(Input),
    /// The suggestion search's ranked table.
    Suggestions {
        cursor: usize,
    },
    /// The confusion matrix, a cell under the cursor (indices into `classes()`).
    Confusion {
        row: usize,
        col: usize,
    },
    /// Variants to queue (by their place in `Variant::menu()`), and seeds each.
    Ablation {
        cursor: usize,
        chosen: Vec<bool>,
        seeds: usize,
    },
}

/// A line of text being typed, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub purpose: InputPurpose,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputPurpose {
    Search,
    AddWord(crate::data::tags::EntityType, WordList),
    RenameWord(crate::data::tags::EntityType, WordList, usize),
    Template,
}

impl InputPurpose {
    pub(crate) fn title(&self) -> String {
        match self {
            InputPurpose::Search => "search".into(),
            InputPurpose::AddWord(kind, list) => format!("add a word to {kind}.{list}"),
            InputPurpose::RenameWord(kind, list, _) => format!("rename in {kind}.{list}"),
            InputPurpose::Template => "template (the word goes in {})".into(),
        }
    }
}

/// The open overlays, bottom first; the top one takes the keys and is drawn last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Overlays {
    stack: Vec<Overlay>,
}

impl Overlays {
    pub(crate) fn top(&self) -> Option<&Overlay> {
        self.stack.last()
    }

    /// Opens `overlay` over the others (no effects: opening only changes the screen).
    pub(crate) fn open(&mut self, overlay: Overlay) -> Vec<Effect> {
        self.stack.push(overlay);
        Vec::new()
    }

    /// Closes the top overlay.
    pub(crate) fn close(&mut self) {
        self.stack.pop();
    }

    /// The top overlay, changed (a cursor moved).
    fn replace_top(&mut self, overlay: Overlay) {
        self.close();
        self.stack.push(overlay);
    }
}

impl Component for Overlays {
    /// The top overlay's keys; an open overlay consumes every command.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        match self.top().cloned() {
            Some(overlay) => Handled::Consumed(self.on_overlay(overlay, command, shared)),
            None => Handled::NotConsumed,
        }
    }

    /// Draws the open overlays over `area`, the top one last.
    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        for (at, overlay) in self.stack.iter().enumerate() {
            let beneath = at.checked_sub(1).map(|below| &self.stack[below]);
            draw_one(shared, overlay, beneath, frame, area);
        }
    }
}

impl Overlays {
    /// A character typed into the input line on top.
    pub(crate) fn type_char(&mut self, c: char) -> Vec<Message> {
        if let Some(Overlay::Input(input)) = self.stack.last_mut() {
            input.text.push(c);
            return self.live_search();
        }
        Vec::new()
    }

    pub(crate) fn backspace(&mut self) -> Vec<Message> {
        if let Some(Overlay::Input(input)) = self.stack.last_mut() {
            input.text.pop();
            return self.live_search();
        }
        Vec::new()
    }

    /// The list narrows as the search query is typed.
    fn live_search(&self) -> Vec<Message> {
        match self.top() {
            Some(Overlay::Input(Input {
                purpose: InputPurpose::Search,
                text,
            })) => vec![Message::Query(text.clone())],
            _ => Vec::new(),
        }
    }

    fn on_overlay(&mut self, overlay: Overlay, command: Command, shared: &Shared) -> Vec<Message> {
        match overlay {
            Overlay::Help => {
                if matches!(command, Command::Help | Command::Back | Command::Quit) {
                    self.close();
                }
                Vec::new()
            }
            Overlay::FilterMenu { cursor } => self.filter_menu(cursor, command, shared),
            Overlay::Confusion { row, col } => self.confusion_matrix(row, col, command),
            Overlay::Suggestions { cursor } => self.suggestions_table(cursor, command, shared),
            Overlay::Ablation {
                cursor,
                chosen,
                seeds,
            } => self.ablation_dialog(cursor, chosen, seeds, command),
            Overlay::ConfirmQuit => self.confirm_quit(command),
            Overlay::ConfirmOverwrite => match command {
                Command::Confirm => {
                    self.close();
                    vec![Message::Save { confirmed: true }]
                }
                Command::Deny | Command::Back => {
                    self.close();
                    vec![Message::Status("not saved".into())]
                }
                _ => Vec::new(),
            },
            Overlay::Input(input) => match command {
                Command::Open => {
                    self.close();
                    submit(input)
                }
                Command::Back => {
                    self.close();
                    if input.purpose == InputPurpose::Search {
                        return vec![Message::Query(String::new())];
                    }
                    Vec::new()
                }
                _ => Vec::new(),
            },
        }
    }

    fn confirm_quit(&mut self, command: Command) -> Vec<Message> {
        match command {
            Command::Confirm => return vec![Message::Quit],
            Command::Save => {
                self.close();
                return vec![Message::Save { confirmed: false }];
            }
            Command::Deny | Command::Back => self.close(),
            _ => {}
        }
        Vec::new()
    }

    fn filter_menu(&mut self, cursor: usize, command: Command, shared: &Shared) -> Vec<Message> {
        let filters = shared.filters();
        let cursor = match command {
            Command::Down => (cursor + 1).min(filters.len() - 1),
            Command::Up => cursor.saturating_sub(1),
            Command::Top => 0,
            Command::Bottom => filters.len() - 1,
            Command::Open => {
                self.close();
                return vec![Message::SetFilter(filters[cursor])];
            }
            Command::Back | Command::Quit | Command::FilterMenu => {
                self.close();
                return Vec::new();
            }
            _ => cursor,
        };
        self.replace_top(Overlay::FilterMenu { cursor });
        Vec::new()
    }

    fn ablation_dialog(
        &mut self,
        cursor: usize,
        mut chosen: Vec<bool>,
        seeds: usize,
        command: Command,
    ) -> Vec<Message> {
        let variants = Variant::menu();
        let mut cursor = cursor;
        let mut seeds = seeds;
        match command {
            Command::Down => cursor = (cursor + 1).min(variants.len() - 1),
            Command::Up => cursor = cursor.saturating_sub(1),
            Command::ToggleList => chosen[cursor] = !chosen[cursor],
            Command::MoreContinuous => seeds += 1,
            Command::FewerContinuous => seeds = seeds.saturating_sub(1).max(1),
            Command::Back | Command::Quit => {
                self.close();
                return Vec::new();
            }
            Command::Open => {
                self.close();
                let mut picked: Vec<Variant> = variants
                    .iter()
                    .zip(&chosen)
                    .filter(|(_, c)| **c)
                    .map(|(v, _)| *v)
                    .collect();
                if picked.is_empty() {
                    picked.push(variants[cursor]);
                }
                return vec![Message::Queue {
                    variants: picked,
                    seeds,
                }];
            }
            _ => {}
        }
        self.replace_top(Overlay::Ablation {
            cursor,
            chosen,
            seeds,
        });
        Vec::new()
    }

    /// Moves over the matrix; Enter filters the list to the tweets with errors in the
    /// cell.
    fn confusion_matrix(&mut self, row: usize, col: usize, command: Command) -> Vec<Message> {
        let classes = crate::eval::confusion::classes();
        let last = classes.len() - 1;
        let (row, col) = match command {
            Command::Down => ((row + 1).min(last), col),
            Command::Up => (row.saturating_sub(1), col),
            Command::WordRight => (row, (col + 1).min(last)),
            Command::WordLeft => (row, col.saturating_sub(1)),
            Command::Open => {
                self.close();
                return vec![
                    Message::Focus(Focus::List),
                    Message::SetFilter(Filter::Confusion(classes[row], classes[col])),
                ];
            }
            Command::Back | Command::Quit | Command::Confusion => {
                self.close();
                return Vec::new();
            }
            _ => (row, col),
        };
        self.replace_top(Overlay::Confusion { row, col });
        Vec::new()
    }

    /// The ranked table: Enter adds the word to its list, x stops the search.
    fn suggestions_table(
        &mut self,
        cursor: usize,
        command: Command,
        shared: &Shared,
    ) -> Vec<Message> {
        let Some(search) = &shared.suggestions else {
            self.close();
            return Vec::new();
        };
        let last = search.results.len().saturating_sub(1);
        let cursor = match command {
            Command::Down => (cursor + 1).min(last),
            Command::Up => cursor.saturating_sub(1),
            Command::CancelRun => {
                return if search.running {
                    vec![Message::Effect(Effect::StopSuggestions)]
                } else {
                    Vec::new()
                };
            }
            Command::Open => {
                let Some(best) = search.results.get(cursor) else {
                    return Vec::new();
                };
                self.close();
                let word = Edit::AddWord(search.kind, search.list, best.word.clone());
                return vec![Message::Edit(word)];
            }
            Command::Back | Command::Quit | Command::Suggest => {
                self.close();
                return Vec::new();
            }
            _ => cursor,
        };
        self.replace_top(Overlay::Suggestions { cursor });
        Vec::new()
    }
}

/// What an input line's text is for, on Enter.
fn submit(input: Input) -> Vec<Message> {
    let edit = match input.purpose {
        InputPurpose::Search => return vec![Message::Focus(Focus::List)],
        InputPurpose::AddWord(kind, list) => Edit::AddWord(kind, list, input.text),
        InputPurpose::RenameWord(kind, list, i) => Edit::RenameWord(kind, list, i, input.text),
        InputPurpose::Template => Edit::Template(input.text),
    };
    vec![Message::Edit(edit)]
}

fn draw_one(
    shared: &Shared,
    overlay: &Overlay,
    beneath: Option<&Overlay>,
    frame: &mut Frame,
    area: Rect,
) {
    match overlay {
        Overlay::Help => help(shared, beneath, frame, area),
        Overlay::FilterMenu { cursor } => filter_menu_window(shared, *cursor, frame, area),
        Overlay::Input(input) => {
            let rect = centered(area, 60, 3);
            frame.render_widget(Clear, rect);
            frame.render_widget(
                Paragraph::new(format!("{}▏", input.text)).block(panel(
                    format!("{} · Enter accepts, Esc cancels", input.purpose.title()),
                    true,
                )),
                rect,
            );
        }
        Overlay::ConfirmQuit => question(
            frame,
            area,
            "quit?",
            &[
                "The vocabulary has unsaved edits.",
                "",
                "s save   y quit without saving   n stay",
            ],
        ),
        Overlay::ConfirmOverwrite => question(
            frame,
            area,
            "overwrite?",
            &[
                "This overwrites the checkpoint's own prompts.toml.",
                "",
                "y overwrite   n keep it",
            ],
        ),
        Overlay::Ablation {
            cursor,
            chosen,
            seeds,
        } => ablation_window(*cursor, chosen, *seeds, frame, area),
        Overlay::Confusion { row, col } => confusion_window(shared, *row, *col, frame, area),
        Overlay::Suggestions { cursor } => suggestions_window(shared, *cursor, frame, area),
    }
}

fn question(frame: &mut Frame, area: Rect, title: &str, text: &[&str]) {
    let rect = centered(area, 56, text.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let lines: Vec<Line> = text.iter().map(|t| Line::raw(t.to_string())).collect();
    frame.render_widget(Paragraph::new(lines).block(panel(title, true)), rect);
}

fn filter_menu_window(shared: &Shared, cursor: usize, frame: &mut Frame, area: Rect) {
    let data = shared.filter_data();
    let filters = shared.filters();
    let items: Vec<ListItem> = filters
        .iter()
        .map(|&filter| {
            let count = data.count(filter).map_or("…".into(), |c| c.to_string());
            ListItem::new(format!("{:<26}{count:>6}", filter.label()))
        })
        .collect();
    let rect = centered(area, 36, filters.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let list = List::new(items)
        .block(panel("filter", true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut state);
}

fn ablation_window(cursor: usize, chosen: &[bool], seeds: usize, frame: &mut Frame, area: Rect) {
    let variants = Variant::menu();
    let items: Vec<ListItem> = variants
        .iter()
        .zip(chosen)
        .map(|(variant, chosen)| {
            let mark = if *chosen { "[x]" } else { "[ ]" };
            ListItem::new(format!("{mark} {variant}"))
        })
        .collect();
    let rect = centered(area, 52, variants.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let title = format!("queue retrains · {seeds} seeds each (+/-) · Space, Enter");
    let list = List::new(items)
        .block(panel(title, true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut state);
}

/// The matrix: rows gold, columns predicted; a cell shows exact matches + errors.
fn confusion_window(shared: &Shared, row: usize, col: usize, frame: &mut Frame, area: Rect) {
    use crate::eval::confusion::{Confusion, classes};
    let rect = centered(area, 64, 12);
    frame.render_widget(Clear, rect);
    let block = panel(
        "confusion · rows gold, columns predicted · Enter lists",
        true,
    );
    let Some(scores) = &shared.scores else {
        frame.render_widget(Paragraph::new("no scores yet").block(block), rect);
        return;
    };
    let per_type = &scores.report.per_type;
    let correct =
        crate::data::tags::EntityType::ALL.map(|k| per_type.get(&k).map_or(0, |s| s.counts.tp));
    let matrix = Confusion::new(&scores.tweet_errors, correct);
    let name = |c: Option<crate::data::tags::EntityType>| c.map_or("none", |k| k.as_str());
    let cells = || {
        classes()
            .into_iter()
            .flat_map(|g| classes().into_iter().map(move |p| (g, p)))
            .filter(|(g, p)| g.is_some() || p.is_some())
    };
    let most = |diagonal: bool| {
        cells()
            .filter(|(g, p)| (g == p) == diagonal)
            .map(|(g, p)| matrix.count(g, p))
            .max()
            .unwrap_or(0)
    };
    let (most_correct, most_errors) = (most(true), most(false));
    let mut lines = vec![Line::raw(format!(
        "{:<8}{}",
        "gold\\pred",
        classes().map(|c| format!("{:>9}", name(c))).concat()
    ))];
    for (r, gold) in classes().into_iter().enumerate() {
        let mut spans = vec![Span::raw(format!("{:<8}", name(gold)))];
        for (c, pred) in classes().into_iter().enumerate() {
            let count = if gold.is_none() && pred.is_none() {
                "·".to_string()
            } else {
                matrix.count(gold, pred).to_string()
            };
            let most = if gold == pred {
                most_correct
            } else {
                most_errors
            };
            let mut style = confusion_shade(matrix.count(gold, pred), most, gold == pred);
            if (r, c) == (row, col) {
                style = style.add_modifier(Modifier::REVERSED);
            }
            spans.push(Span::styled(format!("{count:>9}"), style));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(format!(
        "errors: {} (the diagonal adds exact matches)",
        matrix.total_errors()
    )));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// A cell's background by its count: five steps from the faintest to the most of its
/// kind, green on the diagonal (exact matches), red off it (errors); empty cells plain.
fn confusion_shade(count: usize, most: usize, diagonal: bool) -> Style {
    const GREENS: [u8; 5] = [22, 28, 34, 40, 46];
    const REDS: [u8; 5] = [52, 88, 124, 160, 196];
    if count == 0 || most == 0 {
        return Style::new();
    }
    let step = ((count * GREENS.len()).div_ceil(most)).clamp(1, GREENS.len()) - 1;
    let ramp = if diagonal { GREENS } else { REDS };
    // Dark text on the two brightest steps, where white would not read.
    let text = if step >= 3 {
        Color::Black
    } else {
        Color::White
    };
    Style::new().bg(Color::Indexed(ramp[step])).fg(text)
}

/// The suggestion search's table, best ΔF1 first, filling in as candidates are scored.
fn suggestions_window(shared: &Shared, cursor: usize, frame: &mut Frame, area: Rect) {
    let Some(search) = &shared.suggestions else {
        return;
    };
    let state = if search.running { "searching" } else { "done" };
    let title = format!(
        "suggestions for {}.{} · {}/{} {state} · Enter adds, x stops",
        search.kind,
        search.list,
        search.results.len(),
        search.candidates
    );
    let items: Vec<ListItem> = search
        .results
        .iter()
        .map(|s| {
            let per_type: Vec<String> = s
                .delta_per_type
                .iter()
                .filter(|(_, d)| d.abs() >= 0.005)
                .map(|(k, d)| format!("{k} {d:+.2}"))
                .collect();
            ListItem::new(format!(
                "{:<18} {:>+6.2}  {}",
                s.word,
                s.delta_f1,
                per_type.join(" ")
            ))
        })
        .collect();
    let rect = centered(area, 70, (search.candidates as u16 + 2).clamp(5, 20));
    frame.render_widget(Clear, rect);
    let list = List::new(items)
        .block(panel(title, true))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut list_state = ListState::default().with_selected(Some(cursor));
    frame.render_stateful_widget(list, rect, &mut list_state);
}

/// The help: every key of the view it was opened over, from the same tables the keys
/// are read with.
fn help(shared: &Shared, beneath: Option<&Overlay>, frame: &mut Frame, area: Rect) {
    // The help lists the keys of the view beneath it, not its own.
    let mut lines = Vec::new();
    for (title, bindings) in keys::context_of(beneath, shared.focus) {
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

#[cfg(test)]
mod tests {
    use crate::data::tags::EntityType;
    use crate::data::tags::EntityType::Loc;
    use crate::data::tags::EntityType::Org;
    use crate::data::tags::EntityType::Other;
    use crate::data::tags::EntityType::Per;
    use crate::eval::score::ErrorKind;
    use crate::tui::app::Action;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::components::overlays::Overlay;
    use crate::tui::filter::Filter;
    use crate::tui::test_support::{command, loaded, run, screen, split_view};
    use std::path::PathBuf;

    #[test]
    fn the_filter_menu_picks_a_filter() {
        let mut app = loaded();
        command(&mut app, Command::FilterMenu);
        for _ in 0..3 {
            command(&mut app, Command::Down);
        }
        command(&mut app, Command::Open);
        assert_eq!(app.list.filter, Filter::Error(ErrorKind::WrongBoundary));
        assert_eq!(app.list.visible, [2]);
        assert_eq!(app.overlays.top(), None);
    }

    #[test]
    fn quitting_with_unsaved_edits_asks_first() {
        let mut app = loaded();
        command(&mut app, Command::Quit);
        assert!(app.quit, "nothing to lose");
        let mut app = loaded();
        command(&mut app, Command::FewerContinuous);
        command(&mut app, Command::Quit);
        assert_eq!(app.overlays.top(), Some(&Overlay::ConfirmQuit));
        assert!(!app.quit);
        command(&mut app, Command::Deny);
        assert_eq!(app.overlays.top(), None);
        command(&mut app, Command::Quit);
        let effects = command(&mut app, Command::Save);
        assert!(
            matches!(&effects[..], [Effect::Save { vocabulary, .. }] if vocabulary.continuous == 1)
        );
        run(
            &mut app,
            Action::Saved(Ok(PathBuf::from("demo-prompts.toml"))),
        );
        assert!(!app.unsaved());
        command(&mut app, Command::Quit);
        assert!(app.quit);
    }

    #[test]
    fn snapshot_help_overlay() {
        let mut app = loaded();
        command(&mut app, Command::Help);
        insta::assert_snapshot!(screen(&app, 100, 40).backend());
    }

    #[test]
    fn snapshot_confirm_quit() {
        let mut app = loaded();
        command(&mut app, Command::FewerContinuous);
        command(&mut app, Command::Quit);
        insta::assert_snapshot!(screen(&app, 80, 24).backend());
    }

    #[test]
    fn the_ablation_dialog_queues_the_chosen_variants_with_the_current_vocabulary() {
        let mut app = loaded();
        command(&mut app, Command::FewerContinuous);
        command(&mut app, Command::Ablations);
        command(&mut app, Command::ToggleList);
        for _ in 0..4 {
            command(&mut app, Command::Down);
        }
        command(&mut app, Command::ToggleList);
        command(&mut app, Command::FewerContinuous);
        let effects = command(&mut app, Command::Open);
        let [
            Effect::SubmitRuns {
                variants,
                seeds,
                vocabulary,
            },
        ] = &effects[..]
        else {
            panic!("{effects:?}");
        };
        use crate::jobs::variant::Variant;
        assert_eq!(variants, &[Variant::Full, Variant::TextOnly]);
        assert_eq!(*seeds, 2, "3 by default, one fewer");
        assert_eq!(vocabulary.continuous, 1, "the edited vocabulary");
        assert_eq!(app.overlays.top(), None);
    }

    #[test]
    fn snapshot_ablation_dialog() {
        let mut app = loaded();
        command(&mut app, Command::Ablations);
        command(&mut app, Command::ToggleList);
        command(&mut app, Command::Down);
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }

    #[test]
    fn the_confusion_matrix_adds_up_to_the_scores_and_filters_the_list() {
        use crate::eval::confusion::{Confusion, classes};
        let view = split_view();
        let report = &view.report;
        let correct = EntityType::ALL.map(|k| report.per_type.get(&k).map_or(0, |s| s.counts.tp));
        let matrix = Confusion::new(&view.tweet_errors, correct);
        let e = &report.errors;
        let errors =
            e.wrong_type + e.wrong_boundary + e.wrong_boundary_and_type + e.spurious + e.missed;
        assert_eq!(matrix.total_errors(), errors);
        assert_eq!(correct.iter().sum::<usize>(), report.micro.counts.tp);
        assert_eq!(
            matrix.count(None, Some(Org)),
            e.spurious,
            "the spurious ORG"
        );
        assert_eq!(matrix.count(Some(Loc), None), e.missed, "the missed LOC");
        assert_eq!(matrix.count(Some(Other), Some(Per)), 1, "the wrong type");
        let cells: usize = classes()
            .into_iter()
            .flat_map(|g| classes().map(move |p| (g, p)))
            .map(|(g, p)| matrix.count(g, p))
            .sum();
        assert_eq!(cells, errors + report.micro.counts.tp);

        let mut app = loaded();
        command(&mut app, Command::Confusion);
        for _ in 0..3 {
            command(&mut app, Command::Down);
        }
        command(&mut app, Command::Open);
        assert_eq!(app.list.filter, Filter::Confusion(Some(Other), Some(Per)));
        assert_eq!(app.list.visible, [1]);
    }

    #[test]
    fn snapshot_confusion_matrix() {
        let mut app = loaded();
        command(&mut app, Command::Confusion);
        command(&mut app, Command::Down);
        command(&mut app, Command::WordRight);
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }

    #[test]
    fn confusion_cells_are_shaded_by_count_green_on_the_diagonal_red_off_it() {
        use ratatui::style::Color;
        let bg = |count, most, diagonal| super::confusion_shade(count, most, diagonal).bg;
        assert_eq!(bg(0, 9, false), None, "an empty cell stays plain");
        assert_eq!(
            bg(9, 9, false),
            Some(Color::Indexed(196)),
            "the most errors"
        );
        assert_eq!(bg(1, 9, false), Some(Color::Indexed(52)), "the fewest");
        assert_eq!(bg(5, 10, true), Some(Color::Indexed(34)), "half way, green");
        // Drawn: the header's row and the gold OTHER → predicted PER cell (one error).
        let mut app = loaded();
        command(&mut app, Command::Confusion);
        let terminal = screen(&app, 100, 30);
        let buffer = terminal.backend().buffer();
        let row = (0..buffer.area.height)
            .find(|&y| {
                let line: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect();
                line.contains("║OTHER")
            })
            .unwrap();
        let shaded = (0..buffer.area.width)
            .filter(|&x| buffer[(x, row)].bg != Color::Reset)
            .count();
        assert!(shaded >= 9, "the OTHER row has a shaded cell: {shaded}");
    }

    #[test]
    fn the_top_overlay_takes_the_keys_and_closing_it_shows_the_one_beneath() {
        let mut app = loaded();
        app.overlays.open(Overlay::FilterMenu { cursor: 0 });
        app.overlays.open(Overlay::Help);
        command(&mut app, Command::Down);
        assert_eq!(
            app.overlays.top(),
            Some(&Overlay::Help),
            "help ignores moves"
        );
        command(&mut app, Command::Back);
        assert_eq!(app.overlays.top(), Some(&Overlay::FilterMenu { cursor: 0 }));
        command(&mut app, Command::Down);
        assert_eq!(app.overlays.top(), Some(&Overlay::FilterMenu { cursor: 1 }));
        command(&mut app, Command::Back);
        assert_eq!(app.overlays.top(), None);
    }
}
