//! A few filled shapes on an RGB image: enough to draw the demo scenes.
//!
//! Only integer arithmetic and IEEE basic operations are used (no trigonometry, whose
//! results differ between libms), so the same seed draws the same bytes everywhere.

use image::{Rgb, RgbImage};
use rand::RngExt;

pub type Color = [u8; 3];

pub struct Canvas {
    pub image: RgbImage,
}

impl Canvas {
    pub fn new(size: u32, background: Color) -> Self {
        Self {
            image: RgbImage::from_pixel(size, size, Rgb(background)),
        }
    }

    pub fn size(&self) -> i32 {
        self.image.width() as i32
    }

    fn put(&mut self, x: i32, y: i32, color: Color) {
        if x >= 0 && y >= 0 && x < self.image.width() as i32 && y < self.image.height() as i32 {
            self.image.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }

    /// Rows from `top` to `bottom` (exclusive) blend from `from` to `to`.
    pub fn vertical_gradient(&mut self, top: i32, bottom: i32, from: Color, to: Color) {
        let span = (bottom - top).max(1);
        for y in top..bottom {
            let t = y - top;
            let color = std::array::from_fn(|c| {
                ((from[c] as i32 * (span - t) + to[c] as i32 * t) / span) as u8
            });
            for x in 0..self.size() {
                self.put(x, y, color);
            }
        }
    }

    pub fn rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, color: Color) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, color);
            }
        }
    }

    pub fn circle(&mut self, cx: i32, cy: i32, r: i32, color: Color) {
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                let (dx, dy) = (x - cx, y - cy);
                if dx * dx + dy * dy <= r * r {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// An ellipse with radii `rx`, `ry`.
    pub fn ellipse(&mut self, cx: i32, cy: i32, rx: i32, ry: i32, color: Color) {
        let (rx2, ry2) = ((rx * rx).max(1) as i64, (ry * ry).max(1) as i64);
        for y in cy - ry..=cy + ry {
            for x in cx - rx..=cx + rx {
                let (dx, dy) = ((x - cx) as i64, (y - cy) as i64);
                if dx * dx * ry2 + dy * dy * rx2 <= rx2 * ry2 {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// A ring between radii `inner` and `outer`.
    pub fn ring(&mut self, cx: i32, cy: i32, inner: i32, outer: i32, color: Color) {
        for y in cy - outer..=cy + outer {
            for x in cx - outer..=cx + outer {
                let d = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if d <= outer * outer && d >= inner * inner {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// A filled polygon (even-odd rule, sampled at pixel centres).
    pub fn polygon(&mut self, points: &[(i32, i32)], color: Color) {
        let Some(min_y) = points.iter().map(|p| p.1).min() else {
            return;
        };
        let max_y = points.iter().map(|p| p.1).max().unwrap_or(min_y);
        for y in min_y..=max_y {
            // Pixel centre at y + 0.5, in half-pixel units to stay in integers.
            let sy = 2 * y + 1;
            let mut crossings: Vec<i32> = Vec::new();
            for i in 0..points.len() {
                let (x0, y0) = points[i];
                let (x1, y1) = points[(i + 1) % points.len()];
                let (y0h, y1h) = (2 * y0, 2 * y1);
                if (y0h <= sy && sy < y1h) || (y1h <= sy && sy < y0h) {
                    // x at the crossing, in half pixels, rounded down.
                    let num = (sy - y0h) * (x1 - x0) * 2;
                    let x = 2 * x0 + num.div_euclid(y1h - y0h);
                    crossings.push(x);
                }
            }
            crossings.sort_unstable();
            for pair in crossings.chunks_exact(2) {
                // Pixels whose centre 2x+1 lies within [a, b].
                let start = pair[0].div_euclid(2);
                let end = (pair[1] - 1).div_euclid(2);
                for x in start..=end {
                    self.put(x, y, color);
                }
            }
        }
    }

    /// Speckle noise: a share of pixels nudged by up to `amount` per channel, so no
    /// single pixel value identifies a scene.
    pub fn speckle(&mut self, rng: &mut impl rand::Rng, per_mille: u32, amount: i32) {
        for pixel in self.image.pixels_mut() {
            if rng.random_range(0..1000) < per_mille {
                let delta = rng.random_range(-amount..=amount);
                for c in &mut pixel.0 {
                    *c = (*c as i32 + delta).clamp(0, 255) as u8;
                }
            }
        }
    }
}

/// `color` with each channel moved by up to `amount`.
pub fn jitter(rng: &mut impl rand::Rng, color: Color, amount: i32) -> Color {
    color.map(|c| (c as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// A random colour with channels in `lo..=hi`.
pub fn random_color(rng: &mut impl rand::Rng, lo: u8, hi: u8) -> Color {
    std::array::from_fn(|_| rng.random_range(lo..=hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_fills_a_square_exactly() {
        let mut c = Canvas::new(10, [0, 0, 0]);
        c.polygon(&[(2, 2), (6, 2), (6, 6), (2, 6)], [255, 255, 255]);
        let filled: Vec<(u32, u32)> = c
            .image
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(filled.len(), 16);
        assert!(
            filled
                .iter()
                .all(|&(x, y)| (2..6).contains(&x) && (2..6).contains(&y))
        );
    }

    #[test]
    fn shapes_clip_at_the_border() {
        let mut c = Canvas::new(8, [0, 0, 0]);
        c.circle(0, 0, 20, [1, 2, 3]);
        c.polygon(&[(-5, -5), (20, -5), (3, 20)], [4, 5, 6]);
        assert_eq!(c.image.width(), 8);
    }
}
