//! The image panel: the tweet's image (or the one it is scored with) inline, through
//! ratatui-image; a tweet without a usable image says why.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use super::{Component, Handled, Message, panel};
use crate::engine::ImageChoice;
use crate::tui::app::{Command, Effect, Shared};

/// The image panel's state: the picture the image thread encoded last, and the tweets
/// shown with another image than their own (`i`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ImagePanel {
    pub shown: Option<ImageOutcome>,
    pub overrides: BTreeMap<usize, ImageChoice>,
}

/// The image panel's picture: encoded off the UI thread for one path and one area.
#[derive(Clone)]
pub(crate) struct ShownImage {
    pub path: PathBuf,
    pub area: ratatui::layout::Rect,
    pub protocol: std::sync::Arc<ratatui_image::protocol::Protocol>,
}

impl std::fmt::Debug for ShownImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShownImage")
            .field("path", &self.path)
            .field("area", &self.area)
            .finish_non_exhaustive()
    }
}

/// What the image worker made of a request.
#[derive(Debug, Clone)]
pub(crate) enum ImageOutcome {
    Shown(ShownImage),
    Failed { path: PathBuf, reason: String },
}

impl Component for ImagePanel {
    /// `i`, from any panel: the tweet with another image.
    fn handle(&mut self, command: Command, shared: &Shared) -> Handled {
        match command {
            Command::CycleImage => Handled::Consumed(self.cycle(shared)),
            _ => Handled::NotConsumed,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let title = match shared.current_view().map(|v| v.image.choice) {
            Some(ImageChoice::None) => "image · removed (i)".to_string(),
            Some(ImageChoice::FromTweet(j)) => format!("image · tweet {j}'s (i)"),
            _ => "image".to_string(),
        };
        let block = panel(title, false);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let message = match wanted(shared) {
            Err(reason) => format!("{reason}: the model runs text-only"),
            Ok(path) => match &self.shown {
                Some(ImageOutcome::Shown(shown)) if shown.path == path && shown.area == inner => {
                    frame.render_widget(Image::new(&shown.protocol), inner);
                    return;
                }
                Some(ImageOutcome::Failed {
                    path: failed,
                    reason,
                }) if *failed == path => {
                    format!("{} cannot be shown: {reason}", path.display())
                }
                _ => "loading the image…".into(),
            },
        };
        frame.render_widget(
            Paragraph::new(message)
                .style(Style::new().fg(Color::DarkGray))
                .wrap(Wrap { trim: true }),
            inner,
        );
    }
}

impl ImagePanel {
    /// Own image → none → another tweet's (the next with an image of another scene) →
    /// own.
    fn cycle(&mut self, shared: &Shared) -> Vec<Message> {
        let Some(tweet) = shared.selected else {
            return Vec::new();
        };
        let current = self
            .overrides
            .get(&tweet)
            .copied()
            .unwrap_or(ImageChoice::Own);
        let has_image: Vec<bool> = shared
            .tweets
            .iter()
            .map(|t| t.image_path.is_some())
            .collect();
        let partner = crate::eval::probe::swap_partner(tweet, &has_image, shared.scenes.as_deref());
        let next = match (current, partner) {
            (ImageChoice::Own, _) => ImageChoice::None,
            (ImageChoice::None, Some(j)) => ImageChoice::FromTweet(j),
            _ => ImageChoice::Own,
        };
        if next == ImageChoice::Own {
            self.overrides.remove(&tweet);
        } else {
            self.overrides.insert(tweet, next);
        }
        let said = match next {
            ImageChoice::Own => "its own image".into(),
            ImageChoice::None => "as if it had no image".into(),
            ImageChoice::FromTweet(j) => format!("with the image of tweet {j}"),
        };
        vec![
            Message::Status(said),
            Message::Effect(Effect::SetImage { tweet, image: next }),
        ]
    }
}

/// The image file the current tweet is shown with, or why there is none.
pub(crate) fn wanted(shared: &Shared) -> Result<PathBuf, String> {
    let index = shared
        .selected
        .ok_or_else(|| "no tweet selected".to_string())?;
    let (source, reason) = match shared.current_view() {
        Some(view) => (
            view.image.from_tweet.unwrap_or(index),
            view.image.no_image.clone(),
        ),
        None => (index, None),
    };
    if let Some(reason) = reason {
        return Err(reason);
    }
    let tweet = &shared.tweets[source];
    match (&tweet.image_path, &tweet.image_id) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(id)) => Err(format!("image {id} is not in the images folder")),
        (None, None) => Err("this tweet has no image".into()),
    }
}

/// The part of the panel the picture fills.
pub(crate) fn inner(area: Rect) -> Rect {
    panel("", false).inner(area)
}

#[cfg(test)]
mod tests {
    use crate::data::tags::EntityType::Per;
    use crate::engine::Event;
    use crate::engine::ImageChoice;
    use crate::tui::app::Action;
    use crate::tui::app::App;
    use crate::tui::app::Command;
    use crate::tui::app::Effect;
    use crate::tui::app::update;
    use crate::tui::test_support::{command, loaded, predicting, screen, span, tweet_view};

    #[test]
    fn i_cycles_the_image_through_none_another_tweets_and_its_own() {
        let mut app = loaded();
        let cycle = |app: &mut App| match &update(app, Action::Command(Command::CycleImage))[..] {
            [Effect::SetImage { tweet: 0, image }] => *image,
            other => panic!("{other:?}"),
        };
        assert_eq!(cycle(&mut app), ImageChoice::None);
        // Tweet 1 has no image: the next with one is tweet 2.
        assert_eq!(cycle(&mut app), ImageChoice::FromTweet(2));
        assert_eq!(cycle(&mut app), ImageChoice::Own);
        assert!(app.image.overrides.is_empty());
        // With scenes known, the other image comes from another scene.
        app.shared.scenes = Some(vec![
            Some("a".into()),
            None,
            Some("a".into()),
            Some("b".into()),
        ]);
        cycle(&mut app);
        assert_eq!(cycle(&mut app), ImageChoice::FromTweet(3));
    }

    #[test]
    fn snapshot_counterfactual_image_marks_what_changed() {
        let mut app = loaded();
        command(&mut app, Command::Bottom);
        // Tweet 3 with tweet 0's image: the spurious ORG becomes a PER.
        let mut view = tweet_view(3);
        view.image.choice = ImageChoice::FromTweet(0);
        view.image.from_tweet = Some(0);
        update(
            &mut app,
            Action::Engine(Event::Tweet {
                generation: 5,
                view: Box::new(predicting(view, span(0, 1, Per), 0.7)),
            }),
        );
        insta::assert_snapshot!(screen(&app, 100, 30).backend());
    }
}
