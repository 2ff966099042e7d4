//! Case-study figures for papers, as MNER papers draw them: the tweet's image, the tweet
//! with gold and each model's predicted entities marked by type (in colour, and also by
//! a pattern and a label, so the figure reads in greyscale print), and the top prompts'
//! similarities a_i as bars. The SVG keeps its words as text and embeds the bundled font
//! (DejaVu Sans); the PNG is rasterised from it by resvg with only that font loaded, so
//! a figure comes out the same on every machine.

use std::sync::Arc;

use base64::Engine as _;
use svg::Document;
use svg::node::element::{
    Circle, Definitions, Group, Image, Line, Pattern, Rectangle, Style, Text,
};

use crate::data::spans::Span;
use crate::data::tags::EntityType;

/// The font every figure is set in (Bitstream Vera licence: assets/fonts/).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_FAMILY: &str = "DejaVu Sans";

/// Bars drawn unless the caller picks another number.
pub const TOP_PROMPTS: usize = 8;

const WIDTH: f64 = 960.0;
const MARGIN: f64 = 24.0;
const IMAGE_SIDE: f64 = 240.0;
const TOP: f64 = 56.0;
const WORD_SIZE: f64 = 17.0;
const LABEL_SIZE: f64 = 11.0;
/// A tweet line: the type label above, the word, the gap to the next.
const LINE_HEIGHT: f64 = 48.0;
/// Where the words of a tweet row start (after the row's name).
const NAME_SIZE: f64 = 14.0;
const BAR_ROW: f64 = 26.0;

/// One model's predictions on the tweet.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub name: String,
    pub spans: Vec<Span>,
}

/// One prompt's similarity to the image.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptBar {
    pub label: String,
    /// The type whose vocabulary the prompt comes from (None: a continuous prompt).
    pub kind: Option<EntityType>,
    pub similarity: f32,
}

/// Everything a figure shows.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseStudy {
    pub title: String,
    pub words: Vec<String>,
    pub gold: Vec<Span>,
    /// A, then B where two models are compared.
    pub models: Vec<ModelRow>,
    /// The bars, highest first (see [`top_prompts`]).
    pub prompts: Vec<PromptBar>,
    /// The image as PNG bytes; None draws why there is none.
    pub image_png: Option<Vec<u8>>,
    pub no_image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("cannot encode the tweet's image as PNG: {0}")]
    Image(#[from] image::ImageError),
    #[error("the figure's SVG does not parse: {0}")]
    Svg(#[from] resvg::usvg::Error),
    #[error("the figure is too large to rasterise at scale {scale}")]
    Size { scale: f32 },
    #[error("cannot encode the figure as PNG: {0}")]
    Png(String),
    #[error("{}: a figure is FILE.svg or FILE.png", path.display())]
    Format { path: std::path::PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The formats a figure is written in, told by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureFormat {
    Svg,
    Png,
}

impl FigureFormat {
    pub fn of(path: &std::path::Path) -> Result<Self, FigureError> {
        let extension = path.extension().and_then(|e| e.to_str());
        match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(Self::Svg),
            Some("png") => Ok(Self::Png),
            _ => Err(FigureError::Format {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Writes `case` to `out` (SVG, or PNG at `scale`), atomically.
pub fn write(case: &CaseStudy, out: &std::path::Path, scale: f32) -> Result<(), FigureError> {
    let bytes = match FigureFormat::of(out)? {
        FigureFormat::Svg => svg(case).into_bytes(),
        FigureFormat::Png => png(case, scale)?,
    };
    let write = || {
        if let Some(folder) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        crate::util::write_atomic(out, &bytes)
    };
    write().map_err(|source| FigureError::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// The `count` prompts with the highest a_i, highest first.
pub fn top_prompts(mut prompts: Vec<PromptBar>, count: usize) -> Vec<PromptBar> {
    prompts.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    prompts.truncate(count);
    prompts
}

/// The image scaled to fit the figure's square, as PNG bytes to embed.
pub fn image_png(image: &image::DynamicImage) -> Result<Vec<u8>, FigureError> {
    // Twice the drawn size, so that a 2x PNG stays sharp.
    let side = (IMAGE_SIDE * 2.0) as u32;
    let fitted = if image.width() > side || image.height() > side {
        image.resize(side, side, image::imageops::FilterType::Lanczos3)
    } else {
        image.clone()
    };
    let mut bytes = Vec::new();
    fitted.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

/// The figure as an SVG document, the bundled font embedded.
pub fn svg(case: &CaseStudy) -> String {
    document(case, true)
}

/// The SVG, with the font embedded as a data URL or (for resvg, which loads it itself
/// and reads no @font-face) not.
fn document(case: &CaseStudy, embed_font: bool) -> String {
    let metrics = FontMetrics::new();
    let defs = definitions(embed_font);
    let mut document = Document::new().add(defs);
    document = document.add(text(MARGIN, 32.0, 20.0, &case.title).set("fill", "#222"));
    document = document.add(image_box(case));
    document = document.add(prompt_bars(&case.prompts, &metrics));
    let mut y = TOP + IMAGE_SIDE + 40.0;
    let names = std::iter::once("gold").chain(case.models.iter().map(|m| m.name.as_str()));
    let widest = names
        .map(|n| metrics.width(n, NAME_SIZE))
        .fold(0.0, f64::max);
    // The words start after the longest row name, and never past a third of the width.
    let words_x = (MARGIN + widest + 16.0).clamp(MARGIN + 150.0, WIDTH / 3.0);
    let rows = std::iter::once(("gold", &case.gold, None)).chain(
        case.models
            .iter()
            .map(|m| (m.name.as_str(), &m.spans, Some(&case.gold))),
    );
    for (name, spans, gold) in rows {
        let row = TweetRow {
            name,
            spans,
            gold,
            top: y,
            words_x,
        };
        let (group, height) = row.draw(&case.words, &metrics);
        document = document.add(group);
        y += height;
    }
    let (legend, height) = legend(y + 8.0);
    document = document.add(legend);
    let total = y + 8.0 + height + MARGIN;
    document
        .set("xmlns", "http://www.w3.org/2000/svg")
        .set("width", WIDTH)
        .set("height", total)
        .set("viewBox", (0.0, 0.0, WIDTH, total))
        .set("font-family", FONT_FAMILY)
        .to_string()
}

/// The figure rasterised at `scale` (2 for print): only the bundled font is loaded.
pub fn png(case: &CaseStudy, scale: f32) -> Result<Vec<u8>, FigureError> {
    let svg = document(case, false);
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family(FONT_FAMILY);
    options.fontdb = Arc::new(fonts);
    let tree = usvg::Tree::from_str(&svg, &options)?;
    let size = tree.size().to_int_size().scale_by(scale);
    let size = size.ok_or(FigureError::Size { scale })?;
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or(FigureError::Size { scale })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| FigureError::Png(e.to_string()))
}

/// A type's colour (Okabe and Ito's palette, safe for colour-blind readers).
fn color(kind: Option<EntityType>) -> &'static str {
    match kind {
        Some(EntityType::Per) => "#0072B2",
        Some(EntityType::Loc) => "#009E73",
        Some(EntityType::Org) => "#D55E00",
        Some(EntityType::Other) => "#CC79A7",
        None => "#888888",
    }
}

fn pattern_id(kind: Option<EntityType>) -> String {
    format!("fill-{}", kind.map_or("continuous", |k| k.as_str()))
}

/// The fill of a type: a light tint of its colour with its own pattern (PER diagonal
/// hatching, LOC dots, ORG horizontal lines, OTHER a cross-hatch), and the bundled font.
fn definitions(embed_font: bool) -> Definitions {
    let mut defs = Definitions::new();
    if embed_font {
        let font = base64::engine::general_purpose::STANDARD.encode(FONT);
        defs = defs.add(Style::new(format!(
            "@font-face {{ font-family: '{FONT_FAMILY}'; src: url(data:font/ttf;base64,{font}) format('truetype'); }}"
        )));
    }
    let kinds = EntityType::ALL.map(Some).into_iter().chain([None]);
    for kind in kinds {
        let ink = color(kind);
        let line = |x1: f64, y1: f64, x2: f64, y2: f64| {
            Line::new()
                .set("x1", x1)
                .set("y1", y1)
                .set("x2", x2)
                .set("y2", y2)
                .set("stroke", ink)
                .set("stroke-width", 1.2)
        };
        let tint = Rectangle::new()
            .set("width", 8)
            .set("height", 8)
            .set("fill", ink)
            .set("fill-opacity", 0.18);
        let mut pattern = Pattern::new()
            .set("id", pattern_id(kind))
            .set("width", 8)
            .set("height", 8)
            .set("patternUnits", "userSpaceOnUse")
            .add(tint);
        pattern = match kind {
            Some(EntityType::Per) => pattern.add(line(0.0, 8.0, 8.0, 0.0)),
            Some(EntityType::Loc) => pattern.add(
                Circle::new()
                    .set("cx", 4)
                    .set("cy", 4)
                    .set("r", 1.4)
                    .set("fill", ink),
            ),
            Some(EntityType::Org) => pattern.add(line(0.0, 4.0, 8.0, 4.0)),
            Some(EntityType::Other) => pattern
                .add(line(0.0, 4.0, 8.0, 4.0))
                .add(line(4.0, 0.0, 4.0, 8.0)),
            None => pattern,
        };
        defs = defs.add(pattern);
    }
    defs
}

fn text(x: f64, y: f64, size: f64, content: &str) -> Text {
    Text::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
}

/// The image in its square, or a grey square saying why there is none.
fn image_box(case: &CaseStudy) -> Group {
    let frame = Rectangle::new()
        .set("x", MARGIN)
        .set("y", TOP)
        .set("width", IMAGE_SIDE)
        .set("height", IMAGE_SIDE)
        .set("fill", "#f2f2f2")
        .set("stroke", "#999");
    let group = Group::new().add(frame);
    match &case.image_png {
        Some(png) => {
            let data = base64::engine::general_purpose::STANDARD.encode(png);
            group.add(
                Image::new()
                    .set("x", MARGIN)
                    .set("y", TOP)
                    .set("width", IMAGE_SIDE)
                    .set("height", IMAGE_SIDE)
                    .set("preserveAspectRatio", "xMidYMid meet")
                    .set("href", format!("data:image/png;base64,{data}")),
            )
        }
        None => {
            let why = case.no_image.as_deref().unwrap_or("no image");
            group.add(
                text(MARGIN + IMAGE_SIDE / 2.0, TOP + IMAGE_SIDE / 2.0, 13.0, why)
                    .set("text-anchor", "middle")
                    .set("fill", "#666"),
            )
        }
    }
}

/// The prompts' a_i as bars beside the image, each filled with its type's pattern.
fn prompt_bars(prompts: &[PromptBar], metrics: &FontMetrics) -> Group {
    let left = MARGIN + IMAGE_SIDE + 32.0;
    let label_width = 230.0;
    let bar_left = left + label_width;
    let bar_max = WIDTH - MARGIN - bar_left - 56.0;
    let heading = format!(
        "top {} prompts by similarity a_i to the image",
        prompts.len()
    );
    let mut group = Group::new().add(text(left, TOP + 12.0, 14.0, &heading).set("fill", "#222"));
    let most = prompts.iter().map(|p| p.similarity).fold(0.0f32, f32::max);
    for (row, prompt) in prompts.iter().enumerate() {
        let y = TOP + 28.0 + row as f64 * BAR_ROW;
        let label = metrics.clip(&prompt.label, 13.0, label_width - 8.0);
        let length = if most > 0.0 {
            f64::from(prompt.similarity / most) * bar_max
        } else {
            0.0
        };
        group = group
            .add(text(left, y + 15.0, 13.0, &label).set("fill", "#222"))
            .add(
                Rectangle::new()
                    .set("x", bar_left)
                    .set("y", y + 3.0)
                    .set("width", length.max(1.0))
                    .set("height", BAR_ROW - 8.0)
                    .set("fill", format!("url(#{})", pattern_id(prompt.kind)))
                    .set("stroke", color(prompt.kind)),
            )
            .add(
                text(
                    bar_left + length + 6.0,
                    y + 15.0,
                    12.0,
                    &format!("{:.3}", prompt.similarity),
                )
                .set("fill", "#444"),
            );
    }
    group
}

/// One row of the tweet (gold, or a model's predictions) and where it goes.
struct TweetRow<'a> {
    name: &'a str,
    spans: &'a [Span],
    /// The gold entities, for a model's row (its entities gold lacks are marked).
    gold: Option<&'a Vec<Span>>,
    top: f64,
    words_x: f64,
}

impl TweetRow<'_> {
    /// The row's name, the words wrapped to the width, each entity boxed in its type's
    /// pattern with its type above; a model's entities that gold lacks are labelled ✗.
    /// Returns the row and its height.
    fn draw(&self, words: &[String], metrics: &FontMetrics) -> (Group, f64) {
        let TweetRow {
            name,
            spans,
            gold,
            top,
            words_x,
        } = *self;
        let space = metrics.width(" ", WORD_SIZE);
        let mut group = Group::new().add(
            text(MARGIN, top + LINE_HEIGHT - 18.0, NAME_SIZE, name)
                .set("fill", "#222")
                .set("font-weight", "bold"),
        );
        let places = place_words(words, metrics, space, words_x);
        for span in spans {
            let kind = Some(span.kind);
            let wrong = gold.is_some_and(|g| !g.contains(span));
            for (index, (line, from, to)) in span_segments(&places, span).into_iter().enumerate() {
                let y = top + line as f64 * LINE_HEIGHT;
                group = group.add(
                    Rectangle::new()
                        .set("x", from - 3.0)
                        .set("y", y + 13.0)
                        .set("width", to - from + 6.0)
                        .set("height", 24.0)
                        .set("rx", 3)
                        .set("fill", format!("url(#{})", pattern_id(kind)))
                        .set("stroke", color(kind))
                        .set("stroke-width", 1.5),
                );
                if index == 0 {
                    let label = if wrong {
                        format!("{} ✗", span.kind)
                    } else {
                        span.kind.to_string()
                    };
                    group = group.add(
                        text(from - 2.0, y + 10.0, LABEL_SIZE, &label)
                            .set("fill", color(kind))
                            .set("font-weight", "bold"),
                    );
                }
            }
        }
        for (word, place) in words.iter().zip(&places) {
            let y = top + place.line as f64 * LINE_HEIGHT;
            group = group.add(text(place.x, y + 31.0, WORD_SIZE, word).set("fill", "#111"));
        }
        let lines = places.last().map_or(1, |p| p.line + 1);
        (group, lines as f64 * LINE_HEIGHT + 6.0)
    }
}

/// Where a word is set: its line of the row and its left and right edges.
#[derive(Debug, Clone, Copy)]
struct Place {
    line: usize,
    x: f64,
    right: f64,
}

/// The words set left to right, wrapped at the figure's margin.
fn place_words(words: &[String], metrics: &FontMetrics, space: f64, left: f64) -> Vec<Place> {
    let mut places = Vec::with_capacity(words.len());
    let (mut line, mut x) = (0, left);
    for word in words {
        let width = metrics.width(word, WORD_SIZE);
        if x > left && x + width > WIDTH - MARGIN {
            line += 1;
            x = left;
        }
        places.push(Place {
            line,
            x,
            right: x + width,
        });
        x += width + space;
    }
    places
}

/// A span's extent on each line it covers: (line, left, right).
fn span_segments(places: &[Place], span: &Span) -> Vec<(usize, f64, f64)> {
    let mut segments: Vec<(usize, f64, f64)> = Vec::new();
    for place in places.get(span.start..span.end).unwrap_or_default() {
        match segments.last_mut() {
            Some(last) if last.0 == place.line => last.2 = place.right,
            _ => segments.push((place.line, place.x, place.right)),
        }
    }
    segments
}

/// What each type's colour and pattern mean.
fn legend(top: f64) -> (Group, f64) {
    let mut group = Group::new();
    let mut x = MARGIN;
    for kind in EntityType::ALL {
        group = group
            .add(
                Rectangle::new()
                    .set("x", x)
                    .set("y", top)
                    .set("width", 26)
                    .set("height", 16)
                    .set("fill", format!("url(#{})", pattern_id(Some(kind))))
                    .set("stroke", color(Some(kind))),
            )
            .add(text(x + 32.0, top + 13.0, 13.0, kind.as_str()).set("fill", "#222"));
        x += 110.0;
    }
    let note = "✗ predicted, not in gold · bars: the prompt's type, grey for continuous prompts";
    group = group.add(text(x, top + 13.0, 12.0, note).set("fill", "#555"));
    (group, 16.0)
}

/// Advance widths of the bundled font, to set the words without a renderer.
struct FontMetrics {
    face: ttf_parser::Face<'static>,
}

impl FontMetrics {
    // The bundled font is a valid TrueType file (the tests render with it).
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let face = ttf_parser::Face::parse(FONT, 0).expect("the bundled font parses");
        Self { face }
    }

    /// The width of `text` at `size` pixels (advances; no kerning, hence the boxes'
    /// padding).
    fn width(&self, text: &str, size: f64) -> f64 {
        let em = f64::from(self.face.units_per_em());
        let fallback = em / 2.0;
        let units: f64 = text
            .chars()
            .map(|c| {
                self.face
                    .glyph_index(c)
                    .and_then(|g| self.face.glyph_hor_advance(g))
                    .map_or(fallback, f64::from)
            })
            .sum();
        units * size / em
    }

    /// `text`, cut with an ellipsis to fit `width`.
    fn clip(&self, text: &str, size: f64, width: f64) -> String {
        if self.width(text, size) <= width {
            return text.to_string();
        }
        let mut clipped: String = text.to_string();
        while !clipped.is_empty() && self.width(&format!("{clipped}…"), size) > width {
            clipped.pop();
        }
        format!("{clipped}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tags::EntityType::{Loc, Org, Per};

    fn case() -> CaseStudy {
        let span = |start, end, kind| Span { start, end, kind };
        let words = "Kevin Durant enters Oracle Arena & <beats> the Warriors tonight"
            .split(' ')
            .map(String::from)
            .collect();
        let mut image = image::RgbImage::new(64, 48);
        for (x, y, pixel) in image.enumerate_pixels_mut() {
            *pixel = image::Rgb([(x * 4) as u8, (y * 5) as u8, 120]);
        }
        CaseStudy {
            title: "tweet 17 · test · A against B".into(),
            words,
            gold: vec![span(0, 2, Per), span(3, 5, Loc), span(8, 9, Org)],
            models: vec![
                ModelRow {
                    name: "A: full".into(),
                    spans: vec![span(0, 2, Per), span(3, 5, Loc), span(8, 9, Org)],
                },
                ModelRow {
                    name: "B: no-image".into(),
                    spans: vec![span(0, 2, Per), span(3, 4, Org)],
                },
            ],
            prompts: top_prompts(
                vec![
                    PromptBar {
                        label: "player · PER expert".into(),
                        kind: Some(Per),
                        similarity: 0.31,
                    },
                    PromptBar {
                        label: "continuous #0".into(),
                        kind: None,
                        similarity: 0.12,
                    },
                    PromptBar {
                        label: "stadium · LOC expert".into(),
                        kind: Some(Loc),
                        similarity: 0.27,
                    },
                ],
                TOP_PROMPTS,
            ),
            image_png: Some(image_png(&image::DynamicImage::ImageRgb8(image)).unwrap()),
            no_image: None,
        }
    }

    /// The contents of the SVG's text elements (as written: escaped, trimmed).
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("</text>")
            .filter_map(|piece| piece.rsplit_once('>'))
            .map(|(_, content)| content.trim())
            .collect()
    }

    #[test]
    fn the_svg_parses_and_holds_the_words_the_labels_and_the_marks() {
        let svg = svg(&case());
        let tree = resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default());
        assert!(tree.is_ok(), "{:?}", tree.err());
        let texts = texts(&svg);
        let words = [
            "Kevin",
            "Durant",
            "Oracle",
            "Warriors",
            "&amp;",
            "&lt;beats&gt;",
        ];
        let labels = [
            "gold",
            "A: full",
            "B: no-image",
            "PER",
            "LOC",
            "ORG ✗",
            "0.310",
        ];
        for text in words.iter().chain(&labels) {
            assert!(texts.contains(text), "{text} in {texts:?}");
        }
        assert!(svg.contains("data:image/png;base64,"), "the image");
        assert!(svg.contains("data:font/ttf;base64,"), "the font");
        let bars = svg.matches("url(#fill-").count();
        assert!(
            bars >= 3 + 3 + 3 + 2 + 4,
            "patterned spans, bars, legend: {bars}"
        );
    }

    #[test]
    fn the_png_has_the_scaled_size_and_is_not_blank() {
        let svg = svg(&case());
        let png = png(&case(), 2.0).unwrap();
        let image = image::load_from_memory(&png).unwrap().to_rgb8();
        let height: f64 = svg
            .split("height=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|h| h.parse().ok())
            .unwrap();
        assert_eq!(image.width(), (WIDTH * 2.0) as u32);
        assert_eq!(image.height(), (height * 2.0).round() as u32);
        let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        let share = inked as f64 / f64::from(image.width() * image.height());
        assert!(share > 0.05, "ink on {share:.3} of the figure");
        // The words are drawn (with the bundled font): the tweet rows hold dark pixels.
        let words_top = ((TOP + IMAGE_SIDE + 40.0) * 2.0) as u32;
        let dark = (words_top..image.height())
            .flat_map(|y| (0..image.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0.iter().all(|&c| c < 60))
            .count();
        assert!(dark > 2000, "dark text pixels under the image: {dark}");
    }

    #[test]
    fn long_tweets_wrap_and_a_span_over_the_break_is_boxed_on_both_lines() {
        let metrics = FontMetrics::new();
        let words: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
        let left = MARGIN + 150.0;
        let places = place_words(&words, &metrics, metrics.width(" ", WORD_SIZE), left);
        assert!(places.last().unwrap().line >= 1, "40 words take two lines");
        assert!(places.iter().all(|p| p.right <= WIDTH - MARGIN));
        let first_break = places.iter().position(|p| p.line == 1).unwrap();
        let span = Span {
            start: first_break - 1,
            end: first_break + 1,
            kind: Per,
        };
        let segments = span_segments(&places, &span);
        assert_eq!(segments.len(), 2, "{segments:?}");
        assert_eq!(segments[1].1, left);
    }

    #[test]
    fn without_an_image_the_square_says_why() {
        let mut case = case();
        case.image_png = None;
        case.no_image = Some("the tweet has no image id".into());
        let svg = svg(&case);
        assert!(texts(&svg).contains(&"the tweet has no image id"));
        assert!(!svg.contains("data:image/png"));
    }
}
