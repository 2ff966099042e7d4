//! Keys: one table per context maps keys to commands, and the help overlay lists the
//! same tables, so the help never disagrees with what the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::tui::app::{Action, App, Command, Focus};
use crate::tui::components::overlays::Overlay;

/// Keys that do one command, with how the help names them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    pub keys: &'static [KeyCode],
    pub label: &'static str,
    pub help: &'static str,
    pub command: Command,
}

const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    help: &'static str,
    command: Command,
) -> Binding {
    Binding {
        keys,
        label,
        help,
        command,
    }
}

use KeyCode::{BackTab, Char, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Right, Tab, Up};

const MOVES: [Binding; 6] = [
    bind(&[Char('j'), Down], "j ↓", "next", Command::Down),
    bind(&[Char('k'), Up], "k ↑", "previous", Command::Up),
    bind(&[PageDown], "PgDn ^d", "a page down", Command::PageDown),
    bind(&[PageUp], "PgUp ^u", "a page up", Command::PageUp),
    bind(&[Char('g'), Home], "g", "first", Command::Top),
    bind(&[Char('G'), End], "G", "last", Command::Bottom),
];

pub(crate) const GLOBAL: &[Binding] = &[
    bind(&[Char('?')], "?", "this help", Command::Help),
    bind(&[Tab, BackTab], "Tab", "next panel", Command::NextPanel),
    bind(
        &[Char('e')],
        "e",
        "vocabulary editor on/off",
        Command::Editor,
    ),
    bind(&[Char(']')], "]", "next filter", Command::NextFilter),
    bind(
        &[Char('[')],
        "[",
        "previous filter",
        Command::PreviousFilter,
    ),
    bind(&[Char('f')], "f", "filter menu", Command::FilterMenu),
    bind(&[Char('/')], "/", "search the text", Command::Search),
    bind(
        &[Char('+'), Char('=')],
        "+",
        "one more continuous prompt",
        Command::MoreContinuous,
    ),
    bind(
        &[Char('-')],
        "-",
        "one fewer continuous prompt",
        Command::FewerContinuous,
    ),
    bind(&[Char('u')], "u", "undo", Command::Undo),
    bind(&[Char('U')], "U", "redo", Command::Redo),
    bind(&[Char('s')], "s", "save the vocabulary", Command::Save),
    bind(
        &[Char('i')],
        "i",
        "image: none/own/another's",
        Command::CycleImage,
    ),
    bind(
        &[Char('r')],
        "r",
        "queue ablation retrains",
        Command::Ablations,
    ),
    bind(&[Char('J')], "J", "jobs panel on/off", Command::Jobs),
    bind(&[Char('C')], "C", "confusion matrix", Command::Confusion),
    bind(
        &[Char('S')],
        "S",
        "suggest words for the editor's list",
        Command::Suggest,
    ),
    bind(&[Char('q')], "q ^c", "quit", Command::Quit),
];

pub(crate) const LIST: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    MOVES[2],
    MOVES[3],
    MOVES[4],
    MOVES[5],
    bind(
        &[Enter, Char('l')],
        "Enter",
        "open the tweet",
        Command::Open,
    ),
    bind(&[Esc], "Esc", "clear the search", Command::Back),
];

pub(crate) const TWEET: &[Binding] = &[
    bind(
        &[Char('a')],
        "a",
        "which prompts this span depends on",
        Command::Attribute,
    ),
    bind(
        &[Char('h'), Left],
        "h ←",
        "previous word",
        Command::WordLeft,
    ),
    bind(&[Char('l'), Right], "l →", "next word", Command::WordRight),
    bind(
        &[Char('p')],
        "p",
        "next prompt: its a_i over the split",
        Command::NextPrompt,
    ),
    bind(
        &[Char('P')],
        "P",
        "previous prompt",
        Command::PreviousPrompt,
    ),
    bind(
        &[Char('F')],
        "F",
        "case-study figure (figures/*.svg, .png)",
        Command::Figure,
    ),
    MOVES[0],
    MOVES[1],
    bind(&[Esc], "Esc", "back to the list", Command::Back),
];

pub(crate) const EDITOR: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    MOVES[2],
    MOVES[3],
    MOVES[4],
    MOVES[5],
    bind(
        &[Char('a')],
        "a",
        "add a word to this list",
        Command::AddWord,
    ),
    bind(
        &[Char('r'), Enter],
        "r Enter",
        "rename the word (template: edit)",
        Command::RenameWord,
    ),
    bind(
        &[Char('d'), KeyCode::Delete],
        "d",
        "delete the word",
        Command::DeleteWord,
    ),
    bind(
        &[Char(' ')],
        "Space",
        "switch this list off/on",
        Command::ToggleList,
    ),
    bind(
        &[Char('t')],
        "t",
        "edit the template",
        Command::EditTemplate,
    ),
    bind(&[Esc], "Esc", "to the tweet", Command::Back),
];

pub(crate) const JOBS: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    MOVES[4],
    MOVES[5],
    bind(&[Char('x')], "x", "cancel the run", Command::CancelRun),
    bind(
        &[Enter],
        "Enter",
        "load the finished run's checkpoint",
        Command::Open,
    ),
    bind(
        &[Char('c')],
        "c",
        "export the table as CSV",
        Command::ExportCsv,
    ),
    bind(
        &[Char('m')],
        "m",
        "export the table as Markdown",
        Command::ExportMarkdown,
    ),
    bind(
        &[Char('t')],
        "t",
        "export the table as LaTeX",
        Command::ExportLatex,
    ),
    bind(&[Esc], "Esc", "back to the examples", Command::Back),
];

const ABLATION: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    bind(
        &[Char(' ')],
        "Space",
        "choose this variant",
        Command::ToggleList,
    ),
    bind(
        &[Char('+'), Char('=')],
        "+",
        "one more seed",
        Command::MoreContinuous,
    ),
    bind(
        &[Char('-')],
        "-",
        "one fewer seed",
        Command::FewerContinuous,
    ),
    bind(
        &[Enter],
        "Enter",
        "queue the chosen variants",
        Command::Open,
    ),
    bind(&[Esc, Char('q')], "Esc", "close", Command::Back),
];

const CONFUSION: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    bind(
        &[Char('h'), Left],
        "h ←",
        "previous column",
        Command::WordLeft,
    ),
    bind(
        &[Char('l'), Right],
        "l →",
        "next column",
        Command::WordRight,
    ),
    bind(
        &[Enter],
        "Enter",
        "list the tweets of this cell",
        Command::Open,
    ),
    bind(&[Esc, Char('q'), Char('C')], "Esc", "close", Command::Back),
];

const SUGGESTIONS: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    bind(&[Enter], "Enter", "add the word to its list", Command::Open),
    bind(&[Char('x')], "x", "stop the search", Command::CancelRun),
    bind(
        &[Esc, Char('q'), Char('S')],
        "Esc",
        "close (the search goes on)",
        Command::Back,
    ),
];

const MENU: &[Binding] = &[
    MOVES[0],
    MOVES[1],
    MOVES[4],
    MOVES[5],
    bind(&[Enter], "Enter", "choose", Command::Open),
    bind(&[Esc, Char('q'), Char('f')], "Esc", "close", Command::Back),
];

const HELP: &[Binding] = &[bind(
    &[Esc, Char('?'), Char('q')],
    "Esc ?",
    "close",
    Command::Back,
)];

const CONFIRM_QUIT: &[Binding] = &[
    bind(&[Char('y')], "y", "quit without saving", Command::Confirm),
    bind(&[Char('s')], "s", "save", Command::Save),
    bind(&[Char('n'), Esc], "n Esc", "stay", Command::Deny),
];

const CONFIRM: &[Binding] = &[
    bind(&[Char('y')], "y", "yes", Command::Confirm),
    bind(&[Char('n'), Esc], "n Esc", "no", Command::Deny),
];

const INPUT: &[Binding] = &[
    bind(&[Enter], "Enter", "accept", Command::Open),
    bind(&[Esc], "Esc", "cancel", Command::Back),
];

/// The tables that apply now, most specific first.
pub(crate) fn context(app: &App) -> Vec<(&'static str, &'static [Binding])> {
    context_of(app.overlays.top(), app.shared.focus)
}

/// The tables under `overlay` (the top one) with `focus`, most specific first.
pub(crate) fn context_of(
    overlay: Option<&Overlay>,
    focus: Focus,
) -> Vec<(&'static str, &'static [Binding])> {
    match overlay {
        Some(Overlay::Help) => vec![("help", HELP)],
        Some(Overlay::FilterMenu { .. }) => vec![("filter menu", MENU)],
        Some(Overlay::ConfirmQuit) => vec![("quit?", CONFIRM_QUIT)],
        Some(Overlay::ConfirmOverwrite) => vec![("overwrite?", CONFIRM)],
        Some(Overlay::Input(_)) => vec![("input", INPUT)],
        Some(Overlay::Ablation { .. }) => vec![("ablations", ABLATION)],
        Some(Overlay::Confusion { .. }) => vec![("confusion matrix", CONFUSION)],
        Some(Overlay::Suggestions { .. }) => vec![("suggestions", SUGGESTIONS)],
        None => {
            let view = match focus {
                Focus::List => ("example list", LIST),
                Focus::Tweet => ("tweet", TWEET),
                Focus::Editor => ("vocabulary editor", EDITOR),
                Focus::Jobs => ("jobs", JOBS),
            };
            vec![view, ("everywhere", GLOBAL)]
        }
    }
}

/// The action a key stands for now, if any.
pub(crate) fn action(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    // Control keys are not their letters: only these three mean something.
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        let command = match key.code {
            Char('c') => Command::Quit,
            Char('d') => Command::PageDown,
            Char('u') => Command::PageUp,
            _ => return None,
        };
        return Some(Action::Command(command));
    }
    if let Some(Overlay::Input(_)) = app.overlays.top() {
        match key.code {
            Char(c) => return Some(Action::Type(c)),
            KeyCode::Backspace => return Some(Action::Backspace),
            _ => {}
        }
    }
    context(app)
        .into_iter()
        .flat_map(|(_, bindings)| bindings.iter())
        .find(|binding| binding.keys.contains(&key.code))
        .map(|binding| Action::Command(binding.command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::{Focus, Session};

    fn app(focus: Focus) -> App {
        let session = Session {
            dataset: "d".into(),
            split: "test".into(),
            checkpoint: "c".into(),
            device: "cpu".into(),
            save_path: "p.toml".into(),
            save_needs_confirm: false,
            checkpoint_dir: "c".into(),
            runs_root: "runs".into(),
        };
        let mut app = App::new(session, None);
        app.shared.focus = focus;
        app
    }

    fn press(app: &App, code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action(app, KeyEvent::new(code, modifiers))
    }

    fn command_of(action: Option<Action>) -> Option<Command> {
        match action {
            Some(Action::Command(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn the_view_decides_what_a_key_means() {
        let none = KeyModifiers::NONE;
        let list = app(Focus::List);
        let tweet = app(Focus::Tweet);
        let editor = app(Focus::Editor);
        assert_eq!(
            command_of(press(&list, Char('l'), none)),
            Some(Command::Open)
        );
        assert_eq!(
            command_of(press(&tweet, Char('l'), none)),
            Some(Command::WordRight)
        );
        assert_eq!(
            command_of(press(&editor, Char('d'), none)),
            Some(Command::DeleteWord)
        );
        assert_eq!(command_of(press(&list, Char('d'), none)), None);
        assert_eq!(
            command_of(press(&list, Char('U'), KeyModifiers::SHIFT)),
            Some(Command::Redo)
        );
    }

    #[test]
    fn control_keys_are_not_their_letters() {
        let editor = app(Focus::Editor);
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(
            command_of(press(&editor, Char('d'), ctrl)),
            Some(Command::PageDown)
        );
        assert_eq!(
            command_of(press(&editor, Char('c'), ctrl)),
            Some(Command::Quit)
        );
        assert!(press(&editor, Char('s'), ctrl).is_none());
    }

    #[test]
    fn an_open_input_takes_the_letters() {
        let mut typing = app(Focus::List);
        typing
            .overlays
            .open(Overlay::Input(crate::tui::components::overlays::Input {
                purpose: crate::tui::components::overlays::InputPurpose::Search,
                text: String::new(),
            }));
        assert!(matches!(
            press(&typing, Char('q'), KeyModifiers::NONE),
            Some(Action::Type('q'))
        ));
        assert_eq!(
            command_of(press(&typing, KeyCode::Enter, KeyModifiers::NONE)),
            Some(Command::Open)
        );
    }
}
