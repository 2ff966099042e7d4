//! The image panel: the tweet's image (or the one it is scored with) inline, through
//! ratatui-image; a tweet without a usable image says why.

use std::path::PathBuf;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui_image::Image;

use super::panel;
use crate::engine::ImageChoice;
use crate::tui::app::{App, ImageOutcome};

/// The image file the current tweet is shown with, or why there is none.
pub(crate) fn wanted(app: &App) -> Result<PathBuf, String> {
    let index = app
        .selected()
        .ok_or_else(|| "no tweet selected".to_string())?;
    let (source, reason) = match app.current_view() {
        Some(view) => (
            view.image.from_tweet.unwrap_or(index),
            view.image.no_image.clone(),
        ),
        None => (index, None),
    };
    if let Some(reason) = reason {
        return Err(reason);
    }
    let tweet = &app.tweets[source];
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

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let title = match app.current_view().map(|v| v.image.choice) {
        Some(ImageChoice::None) => "image · removed (i)".to_string(),
        Some(ImageChoice::FromTweet(j)) => format!("image · tweet {j}'s (i)"),
        _ => "image".to_string(),
    };
    let block = panel(title, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let message = match wanted(app) {
        Err(reason) => format!("{reason}: the model runs text-only"),
        Ok(path) => match &app.image {
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
