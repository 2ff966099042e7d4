//! The demo world's images: procedurally drawn scenes in four categories, one per
//! entity type, each in several views a small vision model can learn to tell apart.

use image::RgbImage;
use rand::RngExt;
use rand::seq::IndexedRandom;

use super::canvas::{Canvas, Color, jitter, random_color};
use crate::data::tags::EntityType;

/// What an image shows; each category goes with one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scene {
    People,
    Places,
    Organisations,
    Things,
}

impl Scene {
    pub const ALL: [Scene; 4] = [
        Scene::People,
        Scene::Places,
        Scene::Organisations,
        Scene::Things,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scene::People => "people",
            Scene::Places => "places",
            Scene::Organisations => "organisations",
            Scene::Things => "things",
        }
    }

    pub fn parse(name: &str) -> Option<Scene> {
        Scene::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The scene that shows an entity of this type.
    pub fn of_type(kind: EntityType) -> Scene {
        match kind {
            EntityType::Per => Scene::People,
            EntityType::Loc => Scene::Places,
            EntityType::Org => Scene::Organisations,
            EntityType::Other => Scene::Things,
        }
    }

    pub fn entity_type(self) -> EntityType {
        match self {
            Scene::People => EntityType::Per,
            Scene::Places => EntityType::Loc,
            Scene::Organisations => EntityType::Org,
            Scene::Things => EntityType::Other,
        }
    }

    pub fn views(self) -> &'static [View] {
        match self {
            Scene::People => &[View::Figure, View::Face, View::Group, View::Team],
            Scene::Places => &[View::Landscape, View::Skyline, View::Map],
            Scene::Organisations => &[View::Logo, View::Storefront],
            Scene::Things => &[View::Product, View::Trophy, View::Poster],
        }
    }
}

/// One way of drawing a scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum View {
    Figure,
    Face,
    Group,
    Team,
    Landscape,
    Skyline,
    Map,
    Logo,
    Storefront,
    Product,
    Trophy,
    Poster,
}

impl View {
    pub fn scene(self) -> Scene {
        match self {
            View::Figure | View::Face | View::Group | View::Team => Scene::People,
            View::Landscape | View::Skyline | View::Map => Scene::Places,
            View::Logo | View::Storefront => Scene::Organisations,
            View::Product | View::Trophy | View::Poster => Scene::Things,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            View::Figure => "figure",
            View::Face => "face",
            View::Group => "group",
            View::Team => "team",
            View::Landscape => "landscape",
            View::Skyline => "skyline",
            View::Map => "map",
            View::Logo => "logo",
            View::Storefront => "storefront",
            View::Product => "product",
            View::Trophy => "trophy",
            View::Poster => "poster",
        }
    }

    /// Words of `prompts/demo.toml` that describe this view; captions use them.
    pub fn caption_words(self) -> &'static [&'static str] {
        match self {
            View::Figure => &["person", "man", "woman"],
            View::Face => &["face", "portrait", "person"],
            View::Group => &["group of people", "crowd", "person"],
            View::Team => &["team", "player", "group of people"],
            View::Landscape => &["landscape", "mountain", "place"],
            View::Skyline => &["skyline", "city", "place"],
            View::Map => &["map", "country", "place"],
            View::Logo => &["logo", "brand", "company"],
            View::Storefront => &["building with a sign", "shop", "company"],
            View::Product => &["product", "bottle", "thing"],
            View::Trophy => &["trophy", "prize", "thing"],
            View::Poster => &["poster", "flyer", "thing"],
        }
    }

    /// Draws the view on a `size`×`size` image.
    pub fn draw(self, rng: &mut impl rand::Rng, size: u32) -> RgbImage {
        let mut canvas = Canvas::new(size, [0, 0, 0]);
        let mut d = Drawing {
            c: &mut canvas,
            scale: size as i32,
        };
        match self {
            View::Figure => d.figure(rng),
            View::Face => d.face(rng),
            View::Group => d.group(rng),
            View::Team => d.team(rng),
            View::Landscape => d.landscape(rng),
            View::Skyline => d.skyline(rng),
            View::Map => d.map(rng),
            View::Logo => d.logo(rng),
            View::Storefront => d.storefront(rng),
            View::Product => d.product(rng),
            View::Trophy => d.trophy(rng),
            View::Poster => d.poster(rng),
        }
        canvas.speckle(rng, 12, 40);
        canvas.image
    }
}

/// Unit star (5 points), in thousandths, outer and inner vertices alternating.
const STAR: [(i32, i32); 10] = [
    (0, -1000),
    (235, -324),
    (951, -309),
    (380, 124),
    (588, 809),
    (0, 400),
    (-588, 809),
    (-380, 124),
    (-951, -309),
    (-235, -324),
];

/// Twelve directions 30° apart, in thousandths (for blob-shaped land).
const DIRECTIONS: [(i32, i32); 12] = [
    (1000, 0),
    (866, 500),
    (500, 866),
    (0, 1000),
    (-500, 866),
    (-866, 500),
    (-1000, 0),
    (-866, -500),
    (-500, -866),
    (0, -1000),
    (500, -866),
    (866, -500),
];

const SKIN: [Color; 5] = [
    [241, 194, 160],
    [224, 172, 125],
    [198, 134, 90],
    [141, 85, 56],
    [92, 58, 40],
];

/// Scene drawing in 96-unit coordinates, scaled to the canvas.
struct Drawing<'a> {
    c: &'a mut Canvas,
    scale: i32,
}

impl Drawing<'_> {
    /// 96-unit coordinate to pixels.
    fn u(&self, v: i32) -> i32 {
        v * self.scale / 96
    }

    fn rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, color: Color) {
        let (a, b, c, d) = (self.u(x0), self.u(y0), self.u(x1), self.u(y1));
        self.c.rect(a, b, c, d, color);
    }

    fn circle(&mut self, x: i32, y: i32, r: i32, color: Color) {
        let (a, b, c) = (self.u(x), self.u(y), self.u(r));
        self.c.circle(a, b, c, color);
    }

    fn polygon(&mut self, points: &[(i32, i32)], color: Color) {
        let scaled: Vec<(i32, i32)> = points
            .iter()
            .map(|&(x, y)| (self.u(x), self.u(y)))
            .collect();
        self.c.polygon(&scaled, color);
    }

    fn gradient(&mut self, top: i32, bottom: i32, from: Color, to: Color) {
        let (a, b) = (self.u(top), self.u(bottom));
        self.c.vertical_gradient(a, b, from, to);
    }

    fn fill(&mut self, color: Color) {
        self.rect(0, 0, 96, 96, color);
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn sky(&mut self, rng: &mut impl rand::Rng, bottom: i32) {
        let (top, low): (Color, Color) = *[
            ([70, 130, 210], [170, 210, 240]),
            ([30, 40, 90], [90, 80, 140]),
            ([240, 140, 80], [250, 210, 150]),
            ([120, 160, 200], [220, 225, 230]),
        ]
        .choose(rng)
        .expect("non-empty");
        self.gradient(0, bottom, jitter(rng, top, 20), jitter(rng, low, 20));
    }

    /// A standing person: head, torso, arms, legs; `h` tall with feet at `feet`.
    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn person(&mut self, rng: &mut impl rand::Rng, cx: i32, feet: i32, h: i32, shirt: Color) {
        let skin = *SKIN.choose(rng).expect("non-empty");
        let pants = jitter(rng, [50, 50, 70], 30);
        let r = (h / 8).max(2);
        let head_y = feet - h + r;
        let shoulders = head_y + r + 1;
        let hips = feet - h * 9 / 20;
        let half = (h / 7).max(2);
        self.rect(cx - half, shoulders, cx + half, hips, shirt);
        let arm = (h / 14).max(1);
        self.rect(cx - half - arm, shoulders, cx - half, hips - h / 10, shirt);
        self.rect(cx + half, shoulders, cx + half + arm, hips - h / 10, shirt);
        let leg = (h / 10).max(1);
        self.rect(cx - half + 1, hips, cx - half + 1 + leg, feet, pants);
        self.rect(cx + half - 1 - leg, hips, cx + half - 1, feet, pants);
        self.circle(cx, head_y, r, skin);
    }

    fn figure(&mut self, rng: &mut impl rand::Rng) {
        let wall = random_color(rng, 60, 230);
        self.fill(wall);
        let floor = jitter(rng, wall, 50);
        self.rect(0, 78, 96, 96, floor);
        let shirt = random_color(rng, 20, 240);
        let h = rng.random_range(55..75);
        let cx = rng.random_range(32..64);
        let feet = rng.random_range(84..92);
        self.person(rng, cx, feet, h, shirt);
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn face(&mut self, rng: &mut impl rand::Rng) {
        self.fill(random_color(rng, 40, 230));
        let skin = *SKIN.choose(rng).expect("non-empty");
        let hair = jitter(rng, [60, 40, 20], 40);
        let (cx, cy) = (rng.random_range(42..54), rng.random_range(46..54));
        let (rx, ry) = (rng.random_range(24..30), rng.random_range(30..36));
        let (ucx, ucy) = (self.u(cx), self.u(cy - 6));
        let (urx, ury) = (self.u(rx + 3), self.u(ry));
        self.c.ellipse(ucx, ucy, urx, ury, hair);
        let (ucy, urx, ury) = (self.u(cy), self.u(rx), self.u(ry));
        self.c.ellipse(ucx, ucy, urx, ury, skin);
        let eye_dx = rx * 2 / 5;
        for side in [-1, 1] {
            self.circle(cx + side * eye_dx, cy - 6, 4, [250, 250, 250]);
            self.circle(cx + side * eye_dx, cy - 6, 2, jitter(rng, [40, 30, 30], 20));
        }
        self.rect(cx - 2, cy - 2, cx + 2, cy + 6, jitter(rng, skin, 25));
        self.rect(
            cx - 9,
            cy + 12,
            cx + 9,
            cy + 15,
            jitter(rng, [170, 60, 60], 30),
        );
    }

    fn group(&mut self, rng: &mut impl rand::Rng) {
        self.fill(random_color(rng, 60, 230));
        let n = rng.random_range(3..6);
        for i in 0..n {
            let cx = 10 + i * 76 / (n - 1).max(1) + rng.random_range(-3..4);
            let shirt = random_color(rng, 20, 240);
            let h = rng.random_range(36..52);
            let feet = rng.random_range(82..94);
            self.person(rng, cx.clamp(8, 88), feet, h, shirt);
        }
    }

    fn team(&mut self, rng: &mut impl rand::Rng) {
        self.sky(rng, 50);
        let grass = jitter(rng, [60, 150, 60], 25);
        self.rect(0, 50, 96, 96, grass);
        self.rect(0, 70, 96, 72, [235, 235, 235]);
        let shirt = random_color(rng, 20, 240);
        let n = rng.random_range(4..7);
        for i in 0..n {
            let cx = 8 + i * 80 / (n - 1) + rng.random_range(-2..3);
            let h = rng.random_range(30..40);
            let feet = rng.random_range(84..90);
            self.person(rng, cx.clamp(6, 90), feet, h, shirt);
        }
        self.circle(rng.random_range(20..76), 90, 4, [250, 250, 250]);
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn landscape(&mut self, rng: &mut impl rand::Rng) {
        let horizon = rng.random_range(48..64);
        self.sky(rng, horizon);
        let base = *[[70, 140, 60], [150, 120, 70], [90, 110, 50]]
            .choose(rng)
            .expect("non-empty");
        let ground = jitter(rng, base, 20);
        self.rect(0, horizon, 96, 96, ground);
        self.circle(
            rng.random_range(10..86),
            rng.random_range(8..22),
            rng.random_range(5..9),
            jitter(rng, [250, 210, 60], 15),
        );
        for _ in 0..rng.random_range(1..4) {
            let peak_x = rng.random_range(10..86);
            let peak_y = rng.random_range(12..horizon - 12);
            let half = rng.random_range(18..34);
            let rock = jitter(rng, [110, 100, 95], 25);
            self.polygon(
                &[
                    (peak_x, peak_y),
                    (peak_x + half, horizon + 2),
                    (peak_x - half, horizon + 2),
                ],
                rock,
            );
            let cap = (horizon - peak_y) / 4;
            self.polygon(
                &[
                    (peak_x, peak_y),
                    (peak_x + half * cap / (horizon - peak_y + 2), peak_y + cap),
                    (peak_x - half * cap / (horizon - peak_y + 2), peak_y + cap),
                ],
                [245, 245, 250],
            );
        }
    }

    fn skyline(&mut self, rng: &mut impl rand::Rng) {
        self.sky(rng, 96);
        let mut x = rng.random_range(-6..2);
        while x < 96 {
            let w = rng.random_range(8..17);
            let top = rng.random_range(20..70);
            let wall = jitter(rng, [70, 75, 90], 30);
            self.rect(x, top, x + w - 1, 96, wall);
            let lit = jitter(rng, [240, 220, 120], 15);
            let mut y = top + 3;
            while y < 92 {
                let mut wx = x + 2;
                while wx < x + w - 3 {
                    if rng.random_bool(0.6) {
                        self.rect(wx, y, wx + 2, y + 2, lit);
                    }
                    wx += 4;
                }
                y += 5;
            }
            x += w;
        }
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn map(&mut self, rng: &mut impl rand::Rng) {
        let sea = jitter(rng, [150, 195, 230], 20);
        self.fill(sea);
        for _ in 0..rng.random_range(1..3) {
            let (cx, cy) = (rng.random_range(30..66), rng.random_range(30..66));
            let points: Vec<(i32, i32)> = DIRECTIONS
                .iter()
                .map(|&(dx, dy)| {
                    let r = rng.random_range(16..36);
                    (cx + dx * r / 1000, cy + dy * r / 1000)
                })
                .collect();
            let base = *[[225, 210, 160], [150, 195, 120]]
                .choose(rng)
                .expect("non-empty");
            let land = jitter(rng, base, 15);
            self.polygon(&points, land);
        }
        let grid = jitter(rng, [100, 140, 190], 10);
        for k in 1..6 {
            self.rect(k * 16, 0, k * 16 + 1, 96, grid);
            self.rect(0, k * 16, 96, k * 16 + 1, grid);
        }
        let (px, py) = (rng.random_range(25..71), rng.random_range(25..65));
        let pin = jitter(rng, [220, 40, 40], 20);
        self.polygon(&[(px - 5, py), (px + 5, py), (px, py + 12)], pin);
        self.circle(px, py, 6, pin);
        self.circle(px, py, 2, [250, 250, 250]);
    }

    fn logo(&mut self, rng: &mut impl rand::Rng) {
        let light = rng.random_bool(0.5);
        let bg = if light {
            random_color(rng, 190, 250)
        } else {
            random_color(rng, 10, 70)
        };
        self.fill(bg);
        let ink = random_color(rng, 30, 230);
        let accent = if light {
            random_color(rng, 200, 255)
        } else {
            random_color(rng, 0, 60)
        };
        let (cx, cy) = (48 + rng.random_range(-4..5), 40 + rng.random_range(-4..5));
        let r = rng.random_range(18..26);
        match rng.random_range(0..4) {
            0 => self.circle(cx, cy, r, ink),
            1 => self.polygon(
                &[(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)],
                ink,
            ),
            2 => self.polygon(
                &[
                    (cx - r, cy - r),
                    (cx + r, cy - r),
                    (cx + r, cy + r / 3),
                    (cx, cy + r),
                    (cx - r, cy + r / 3),
                ],
                ink,
            ),
            _ => {
                let (a, b, c, d) = (self.u(cx), self.u(cy), self.u(r * 2 / 3), self.u(r));
                self.c.ring(a, b, c, d, ink);
            }
        }
        let inner = r / 2;
        if rng.random_bool(0.5) {
            let star: Vec<(i32, i32)> = STAR
                .iter()
                .map(|&(x, y)| (cx + x * inner / 1000, cy + y * inner / 1000))
                .collect();
            self.polygon(&star, accent);
        } else {
            self.polygon(
                &[
                    (cx, cy - inner),
                    (cx + inner, cy + inner),
                    (cx - inner, cy + inner),
                ],
                accent,
            );
        }
        let bar_w = rng.random_range(24..40);
        self.rect(48 - bar_w, 74, 48 + bar_w, 80, ink);
        self.rect(48 - bar_w / 2, 84, 48 + bar_w / 2, 88, ink);
    }

    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn storefront(&mut self, rng: &mut impl rand::Rng) {
        self.sky(rng, 80);
        self.rect(0, 80, 96, 96, jitter(rng, [120, 120, 125], 20));
        let base = *[[150, 80, 60], [170, 170, 165], [200, 190, 160]]
            .choose(rng)
            .expect("non-empty");
        let wall = jitter(rng, base, 20);
        let (x0, x1) = (rng.random_range(4..16), rng.random_range(80..92));
        let top = rng.random_range(26..40);
        self.rect(x0, top, x1, 82, wall);
        let sign = random_color(rng, 0, 255);
        let sign_top = top + 3;
        self.rect(x0 + 4, sign_top, x1 - 4, sign_top + 12, sign);
        let text = if sign.iter().map(|&c| c as u32).sum::<u32>() > 380 {
            [20, 20, 20]
        } else {
            [250, 250, 250]
        };
        let mut x = x0 + 8;
        while x < x1 - 10 {
            self.rect(
                x,
                sign_top + 4,
                x + rng.random_range(3..7),
                sign_top + 8,
                text,
            );
            x += 8;
        }
        let glass = jitter(rng, [160, 200, 220], 20);
        self.rect(x0 + 6, sign_top + 18, x1 - 6, 62, glass);
        let door = (x0 + x1) / 2;
        self.rect(door - 6, 64, door + 6, 82, jitter(rng, [80, 50, 30], 20));
    }

    fn product(&mut self, rng: &mut impl rand::Rng) {
        self.fill(random_color(rng, 80, 240));
        let table = jitter(rng, [140, 95, 55], 25);
        self.rect(0, 74, 96, 96, table);
        let body = random_color(rng, 20, 240);
        let label = random_color(rng, 20, 240);
        let cx = rng.random_range(36..60);
        if rng.random_bool(0.5) {
            let (w, h) = (rng.random_range(9..13), rng.random_range(30..42));
            self.rect(cx - w, 76 - h, cx + w, 76, body);
            self.rect(cx - w / 2, 76 - h - 12, cx + w / 2, 76 - h, body);
            self.rect(
                cx - w / 2 - 1,
                76 - h - 16,
                cx + w / 2 + 1,
                76 - h - 12,
                jitter(rng, [40, 40, 40], 30),
            );
            self.rect(cx - w, 76 - h * 2 / 3, cx + w, 76 - h / 3, label);
        } else {
            let (w, h) = (rng.random_range(16..24), rng.random_range(24..36));
            self.rect(cx - w, 76 - h, cx + w, 76, body);
            self.rect(cx - w + 4, 76 - h + 6, cx + w - 4, 76 - h / 2, label);
        }
    }

    fn trophy(&mut self, rng: &mut impl rand::Rng) {
        self.fill(random_color(rng, 20, 140));
        let metal = if rng.random_bool(0.7) {
            jitter(rng, [225, 180, 45], 20)
        } else {
            jitter(rng, [200, 200, 210], 15)
        };
        let cx = rng.random_range(42..54);
        let top = rng.random_range(14..22);
        let w = rng.random_range(18..24);
        for side in [-1, 1] {
            let (a, b, c, d) = (
                self.u(cx + side * w),
                self.u(top + 10),
                self.u(5),
                self.u(9),
            );
            self.c.ring(a, b, c, d, metal);
        }
        self.polygon(
            &[
                (cx - w, top),
                (cx + w, top),
                (cx + 4, top + 34),
                (cx - 4, top + 34),
            ],
            metal,
        );
        self.rect(cx - 3, top + 34, cx + 3, top + 50, metal);
        let base = jitter(rng, [70, 45, 30], 20);
        self.rect(cx - 16, top + 50, cx + 16, top + 60, base);
        self.rect(cx - 8, top + 53, cx + 8, top + 57, metal);
    }

    fn poster(&mut self, rng: &mut impl rand::Rng) {
        self.fill(random_color(rng, 120, 240));
        let (x0, y0) = (rng.random_range(16..28), rng.random_range(6..14));
        let (x1, y1) = (96 - rng.random_range(16..28), 96 - rng.random_range(6..14));
        self.rect(
            x0 - 3,
            y0 - 3,
            x1 + 3,
            y1 + 3,
            jitter(rng, [40, 30, 30], 20),
        );
        let paper = random_color(rng, 0, 255);
        self.rect(x0, y0, x1, y1, paper);
        let ink = paper.map(|c| 255 - c);
        let (cx, cy) = ((x0 + x1) / 2, (y0 + y1) / 2);
        let r = ((x1 - x0) / 2 - 4).min(18);
        if rng.random_bool(0.5) {
            let star: Vec<(i32, i32)> = STAR
                .iter()
                .map(|&(x, y)| (cx + x * r / 1000, cy + y * r / 1000))
                .collect();
            self.polygon(&star, ink);
        } else {
            self.circle(cx, cy, r * 3 / 4, ink);
        }
        self.rect(x0 + 4, y0 + 4, x1 - 4, y0 + 9, ink);
        self.rect(x0 + 8, y1 - 9, x1 - 8, y1 - 5, ink);
    }
}
