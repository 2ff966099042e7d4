//! The example list: index, marks (✗ errors, ∅ no image), text preview; its filter,
//! its search, and the cursor that selects the tweet every other panel shows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};

use super::{Component, Handled, Message, clip, panel};
use crate::tui::app::{Command, EngineState, Focus, Shared};
use crate::tui::filter::Filter;

/// The example list's state: filter, search, what is visible and where the cursor is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ExampleList {
    pub filter: Filter,
    pub query: String,
    pub visible: Vec<usize>,
    pub cursor: usize,
}

impl Component for ExampleList {
    /// The list's keys: the moves, Enter opens the tweet, Esc clears the search.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        match command {
            Command::Open => Handled::Consumed(vec![Message::Focus(Focus::Tweet)]),
            Command::Back if !self.query.is_empty() => {
                self.query.clear();
                Handled::Consumed(self.refilter(shared))
            }
            _ => self.step(command, shared),
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let data = shared.filter_data();
        let count = data
            .count(self.filter)
            .map_or("…".to_string(), |c| c.to_string());
        let mut title = format!(
            "examples · {} ({}/{})",
            self.filter.label(),
            count,
            shared.tweets.len()
        );
        if !self.query.is_empty() {
            title.push_str(&format!(" · /{}", self.query));
        }
        let block = panel(title, shared.focused(Focus::List));
        if shared.tweets.is_empty() {
            let text = match shared.engine {
                EngineState::Failed => "the dataset could not be loaded (see the status bar)",
                _ => "loading the checkpoint and the split…",
            };
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
        if self.visible.is_empty() {
            let text = if self.filter.needs_scores() && shared.scores.is_none() {
                "waiting for the first scoring…"
            } else {
                "no tweet matches"
            };
            frame.render_widget(Paragraph::new(text).block(block), area);
            return;
        }
        let width = area.width.saturating_sub(9) as usize;
        let items: Vec<ListItem> = self
            .visible
            .iter()
            .map(|&i| item(shared, i, width))
            .collect();
        let list = List::new(items)
            .block(block)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶");
        let mut state = ListState::default().with_selected(Some(self.cursor));
        frame.render_stateful_widget(list, area, &mut state);
    }
}

impl ExampleList {
    /// The tweet under the cursor.
    pub(crate) fn selected(&self) -> Option<usize> {
        self.visible.get(self.cursor).copied()
    }

    /// Whether `command` moves through the list (the tweet view passes these on).
    pub(crate) fn is_move(command: Command) -> bool {
        matches!(
            command,
            Command::Down
                | Command::Up
                | Command::PageDown
                | Command::PageUp
                | Command::Top
                | Command::Bottom
        )
    }

    /// The moves through the list.
    pub(crate) fn step(&mut self, command: Command, shared: &Shared) -> Handled {
        let page = shared.page.max(1);
        let messages = match command {
            Command::Down => self.move_cursor(shared, |c, _| c + 1),
            Command::Up => self.move_cursor(shared, |c, _| c.saturating_sub(1)),
            Command::PageDown => self.move_cursor(shared, |c, _| c + page),
            Command::PageUp => self.move_cursor(shared, |c, _| c.saturating_sub(page)),
            Command::Top => self.move_cursor(shared, |_, _| 0),
            Command::Bottom => self.move_cursor(shared, |_, len| len.saturating_sub(1)),
            _ => return Handled::NotConsumed,
        };
        Handled::Consumed(messages)
    }

    /// Recomputes the visible tweets, keeping the selected tweet under the cursor when
    /// it is still visible; says so when another tweet is selected.
    pub(crate) fn refilter(&mut self, shared: &Shared) -> Vec<Message> {
        let before = self.selected();
        self.visible = shared.filter_data().visible(self.filter, &self.query);
        self.cursor = before
            .and_then(|b| self.visible.iter().position(|&i| i == b))
            .unwrap_or(0);
        self.selection_changed(before, shared)
    }

    /// The list with `filter` (the filter menu and the confusion matrix pick one).
    pub(crate) fn set_filter(&mut self, filter: Filter, shared: &Shared) -> Vec<Message> {
        self.filter = filter;
        let mut messages = vec![Message::Status(format!("filter: {}", filter.label()))];
        messages.extend(self.refilter(shared));
        messages
    }

    pub(crate) fn cycle_filter(&mut self, step: isize, shared: &Shared) -> Vec<Message> {
        let filters = shared.filters();
        let at = filters.iter().position(|f| *f == self.filter).unwrap_or(0);
        let next = (at as isize + step).rem_euclid(filters.len() as isize) as usize;
        self.set_filter(filters[next], shared)
    }

    fn selection_changed(&self, before: Option<usize>, shared: &Shared) -> Vec<Message> {
        match self.selected() {
            Some(now) if Some(now) != before || shared.view.is_none() => {
                vec![Message::Selected(now)]
            }
            _ => Vec::new(),
        }
    }

    fn move_cursor(
        &mut self,
        shared: &Shared,
        to: impl FnOnce(usize, usize) -> usize,
    ) -> Vec<Message> {
        let before = self.selected();
        let len = self.visible.len();
        if len == 0 {
            return Vec::new();
        }
        self.cursor = to(self.cursor, len).min(len - 1);
        self.selection_changed(before, shared)
    }
}

fn item(shared: &Shared, index: usize, width: usize) -> ListItem<'static> {
    let tweet = &shared.tweets[index];
    let errors = shared
        .scores
        .as_ref()
        .and_then(|s| s.tweet_errors.get(index))
        .map_or(0, Vec::len);
    let error_mark = if errors > 0 {
        Span::styled("✗", Style::new().fg(Color::Red))
    } else {
        Span::raw(" ")
    };
    let image_mark = if tweet.image_path.is_none() {
        Span::styled("∅", Style::new().fg(Color::DarkGray))
    } else {
        Span::raw(" ")
    };
    ListItem::new(Line::from(vec![
        Span::styled(format!("{index:>4} "), Style::new().fg(Color::DarkGray)),
        error_mark,
        image_mark,
        Span::raw(" "),
        Span::raw(clip(&tweet.words.join(" "), width)),
    ]))
}

#[cfg(test)]
mod tests {
    use crate::data::tags::EntityType::Loc;
    use crate::data::tags::EntityType::Org;
    use crate::data::tags::EntityType::Other;
    use crate::data::tags::EntityType::Per;
    use crate::eval::score::ErrorKind;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::filter::Filter;
    use crate::tui::test_support::{command, compared_app, loaded, screen, typed};

    #[test]
    fn filters_and_their_counts() {
        let app = loaded();
        let data = app.shared.filter_data();
        let expect = [
            (Filter::All, 4),
            (Filter::Misclassified, 3),
            (Filter::Error(ErrorKind::WrongType), 1),
            (Filter::Error(ErrorKind::WrongBoundary), 1),
            (Filter::Error(ErrorKind::Missed), 1),
            (Filter::Error(ErrorKind::Spurious), 1),
            (Filter::Error(ErrorKind::WrongBoundaryAndType), 0),
            (Filter::GoldType(Per), 1),
            (Filter::PredictedType(Per), 2),
            (Filter::PredictedType(Org), 2),
            (Filter::HasImage, 3),
            (Filter::NoImage, 1),
            (Filter::ImageAmbiguous, 2),
        ];
        for (filter, count) in expect {
            assert_eq!(data.count(filter), Some(count), "{}", filter.label());
        }
        // Before any scoring, the error filters cannot be counted.
        let mut unscored = app.clone();
        unscored.shared.scores = None;
        assert_eq!(
            unscored.shared.filter_data().count(Filter::Misclassified),
            None
        );
        assert_eq!(
            unscored.shared.filter_data().count(Filter::NoImage),
            Some(1)
        );
    }

    #[test]
    fn cycling_filters_keeps_the_selection_when_it_stays_visible() {
        let mut app = loaded();
        command(&mut app, Command::Down);
        assert_eq!(app.selected(), Some(1));
        let effects = command(&mut app, Command::NextFilter);
        assert_eq!(app.list.filter, Filter::Misclassified);
        assert_eq!(app.list.visible, [1, 2, 3]);
        assert_eq!(app.selected(), Some(1));
        assert!(effects.is_empty(), "the shown tweet did not change");
        command(&mut app, Command::PreviousFilter);
        command(&mut app, Command::PreviousFilter);
        assert_eq!(app.list.filter, Filter::ImageAmbiguous, "cycling wraps");
        assert_eq!(app.list.visible, [1, 2]);
    }

    #[test]
    fn moving_selects_tweets_within_bounds() {
        let mut app = loaded();
        assert_eq!(command(&mut app, Command::Bottom), [Effect::Select(3)]);
        assert!(command(&mut app, Command::Down).is_empty());
        assert_eq!(app.selected(), Some(3));
        app.shared.page = 2;
        command(&mut app, Command::PageUp);
        assert_eq!(app.selected(), Some(1));
        command(&mut app, Command::Top);
        assert_eq!(app.selected(), Some(0));
    }

    #[test]
    fn search_narrows_the_list_as_it_is_typed_and_escape_clears_it() {
        let mut app = loaded();
        command(&mut app, Command::Search);
        typed(&mut app, "paris");
        assert_eq!(app.list.visible, [2]);
        assert_eq!(app.selected(), Some(2));
        command(&mut app, Command::Open);
        assert_eq!(app.overlays.top(), None);
        assert_eq!(app.list.query, "paris");
        command(&mut app, Command::Back);
        assert_eq!(app.list.visible.len(), 4);
    }

    #[test]
    fn snapshot_each_filter() {
        for filter in loaded().shared.filters() {
            let mut app = loaded();
            while app.list.filter != filter {
                command(&mut app, Command::NextFilter);
            }
            let terminal = screen(&app, 80, 24);
            let name = filter.label().replace(' ', "_");
            insta::assert_snapshot!(format!("filter_{name}"), terminal.backend());
        }
    }

    #[test]
    fn compare_filters_count_disagreements_by_type_and_by_who_is_right() {
        use crate::eval::compare::Right;
        let app = compared_app();
        let data = app.shared.filter_data();
        let count = |kind, right| data.count(Filter::Disagree(kind, right));
        assert_eq!(count(None, None), Some(4));
        assert_eq!(count(None, Some(Right::A)), Some(1));
        assert_eq!(count(None, Some(Right::B)), Some(3));
        assert_eq!(count(Some(Loc), None), Some(2), "Austin, and Paris");
        assert_eq!(count(Some(Other), Some(Right::B)), Some(1));
        let without = loaded();
        assert_eq!(
            without
                .shared
                .filter_data()
                .count(Filter::Disagree(None, None)),
            None
        );
    }
}
