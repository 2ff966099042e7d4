//! The workbench's components, one file each: the example list, the tweet, its image,
//! the prompts, the vocabulary editor, the metrics, the status bar, the jobs panel and
//! the stack of overlays. Every one implements [`Component`]: its state is `self` (a
//! field of [`App`]), `handle(&mut self, Command, &Shared)` answers a command with
//! [`Handled`] (consumed, or not), and `draw(&self, &mut Frame, Rect, &Shared)` draws
//! it. [`Shared`] is what a component reads and does not own: the session's data
//! (tweets, scores, the tweet's view, the compared checkpoint, the suggestion search,
//! focus, engine state, status message) and what it may know of the others (the
//! selected tweet, the word under the cursor, unsaved edits, an open overlay), which
//! the `App` copies in before every handler and draw. A component changes nothing
//! outside itself: what it wants of the rest (focus, the status bar, the list's filter,
//! a step through the list, an edit or save of the vocabulary, an overlay, an effect
//! for the event loop) it returns as [`Message`]s inside [`Handled::Consumed`], and the
//! `App` applies them in order after the handler returns. The metrics panel and the
//! status bar have no keys and no state of their own. The keys that mean the same in
//! every panel (quit, help, Tab, the windows) stay the `App`'s. Also here: the layout
//! and the helpers the draws share.

pub(crate) mod editor;
pub(crate) mod image;
pub(crate) mod jobs;
pub(crate) mod list;
pub(crate) mod metrics;
pub(crate) mod overlays;
pub(crate) mod prompts;
pub(crate) mod status;
pub(crate) mod tweet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, BorderType};

use crate::data::tags::EntityType;
use crate::jobs::variant::Variant;
use crate::tui::app::{App, Command, Effect, Focus, Shared, Suggestions};
use crate::tui::editor::Edit;
use crate::tui::filter::Filter;
use overlays::Overlay;

/// A panel of the workbench: its own state (`self`), its keys and its draw. It reads
/// the rest of the workbench through [`Shared`] and changes it only through the
/// [`Message`]s it answers with.
pub(crate) trait Component {
    /// Answers a command: consumed (with its messages) or not. A panel without keys
    /// consumes nothing.
    fn handle(&mut self, _command: Command, _shared: &Shared) -> Handled {
        Handled::NotConsumed
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared);
}

/// What a component asks of the rest of the workbench; the `App` applies these in
/// order after the handler returns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// For the event loop to carry out.
    Effect(Effect),
    /// The keys go to another panel.
    Focus(Focus),
    /// The status bar says this.
    Status(String),
    /// The status bar says nothing (an edit went through).
    ClearStatus,
    /// A window opens over the others.
    Open(Overlay),
    /// A suggestion search starts.
    Search(Suggestions),
    /// The editor's vocabulary changed: the engine is brought to it.
    VocabularyChanged,
    /// An edit of the vocabulary (typed into an input line, or a suggestion taken).
    Edit(Edit),
    /// Save the vocabulary (`confirmed`: overwriting the checkpoint's was answered yes).
    Save { confirmed: bool },
    /// The list shows the tweets of this filter.
    SetFilter(Filter),
    /// The list's search query, as typed so far.
    Query(String),
    /// Queue retrains of these variants with the edited vocabulary.
    Queue {
        variants: Vec<Variant>,
        seeds: usize,
    },
    /// The workbench ends.
    Quit,
    /// The list moves (the tweet view steps through it with the list's keys).
    StepList(Command),
    /// The list selected this tweet: its view starts at its first word and the engine
    /// is asked for it.
    Selected(usize),
}

/// A component's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Handled {
    /// The component took the command; the `App` applies these messages.
    Consumed(Vec<Message>),
    /// Not this component's: the next in line gets it.
    NotConsumed,
}

impl Handled {
    /// Consumed, with only effects for the loop.
    pub(crate) fn effects(effects: Vec<Effect>) -> Self {
        Handled::Consumed(effects.into_iter().map(Message::Effect).collect())
    }

    /// The messages, when consumed.
    pub(crate) fn consumed(self) -> Option<Vec<Message>> {
        match self {
            Handled::Consumed(messages) => Some(messages),
            Handled::NotConsumed => None,
        }
    }
}

/// Where each panel goes on a screen of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Areas {
    /// The example list, or the vocabulary editor in its place.
    pub left: Rect,
    pub tweet: Rect,
    pub image: Rect,
    pub prompts: Rect,
    pub metrics: Rect,
    pub status: Rect,
}

impl Areas {
    /// The layout: list left, tweet right, image and prompts under it, metrics below;
    /// larger terminals give the extra room to the tweet and the panels.
    /// `comparing`: the scores table has a row for the compared checkpoint too.
    pub(crate) fn of(area: Rect, comparing: bool) -> Self {
        let [main, status] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
        let left_width = (main.width * 36 / 100).clamp(24, 64);
        let [left, right] =
            Layout::horizontal([Constraint::Length(left_width), Constraint::Min(0)]).areas(main);
        // The scores table (header, all, [B,] four types) needs 8 rows with its border.
        let metrics_height = if right.height >= 20 {
            8 + u16::from(comparing)
        } else {
            right.height / 3
        };
        let [tweet, middle, metrics] = Layout::vertical([
            Constraint::Percentage(38),
            Constraint::Min(0),
            Constraint::Length(metrics_height),
        ])
        .areas(right);
        let [image, prompts] =
            Layout::horizontal([Constraint::Percentage(38), Constraint::Min(0)]).areas(middle);
        Self {
            left,
            tweet,
            image,
            prompts,
            metrics,
            status,
        }
    }
}

/// Draws the whole screen.
pub(crate) fn draw(app: &App, frame: &mut Frame) {
    let areas = Areas::of(frame.area(), app.shared.compare.is_some());
    if app.jobs.shown {
        let main = Rect {
            height: areas.status.y - frame.area().y,
            ..frame.area()
        };
        app.jobs.draw(frame, main, &app.shared);
        app.status.draw(frame, areas.status, &app.shared);
        app.overlays.draw(frame, frame.area(), &app.shared);
        return;
    }
    if app.editor.shown {
        app.editor.draw(frame, areas.left, &app.shared);
    } else {
        app.list.draw(frame, areas.left, &app.shared);
    }
    app.tweet.draw(frame, areas.tweet, &app.shared);
    app.image.draw(frame, areas.image, &app.shared);
    app.prompts.draw(frame, areas.prompts, &app.shared);
    app.metrics.draw(frame, areas.metrics, &app.shared);
    app.status.draw(frame, areas.status, &app.shared);
    app.overlays.draw(frame, frame.area(), &app.shared);
}

/// A panel's frame; the focused panel's border is bold and doubled so that focus reads
/// without colour.
pub(crate) fn panel(title: impl Into<String>, focused: bool) -> Block<'static> {
    let block = Block::bordered().title(format!(" {} ", title.into()));
    if focused {
        block
            .border_type(BorderType::Double)
            .border_style(Style::new().add_modifier(Modifier::BOLD))
    } else {
        block.border_type(BorderType::Plain)
    }
}

/// Each entity type's colour (the 16-colour palette, so it reads on any terminal).
pub(crate) fn type_color(kind: EntityType) -> Color {
    match kind {
        EntityType::Per => Color::Cyan,
        EntityType::Loc => Color::Green,
        EntityType::Org => Color::Yellow,
        EntityType::Other => Color::Magenta,
    }
}

/// A centred rectangle of at most `width` × `height` inside `area`.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// `text` cut to `width` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use crate::tui::app::App;
    use crate::tui::app::Command;
    use crate::tui::test_support::{command, loaded, screen, session};

    #[test]
    fn snapshot_first_screen() {
        insta::assert_snapshot!(screen(&loaded(), 120, 36).backend());
    }

    #[test]
    fn snapshot_loading() {
        let app = App::new(session(), None);
        insta::assert_snapshot!(screen(&app, 80, 24).backend());
    }

    #[test]
    fn snapshot_small_and_large_terminals() {
        let mut app = loaded();
        command(&mut app, Command::Down);
        insta::assert_snapshot!("layout_80x24", screen(&app, 80, 24).backend());
        insta::assert_snapshot!("layout_200x60", screen(&app, 200, 60).backend());
    }
}
