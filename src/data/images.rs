//! Tweet images: finding them, decoding them without ever panicking, and CLIP's
//! preprocessing with exactly the pixels Pillow (and so HF's CLIPImageProcessor) gives.

use std::fmt;
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage, RgbaImage};

/// Extensions tried, in order, for `images/<id>.<ext>`.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "png", "jpeg"];

/// Finds a tweet's image file in an images directory.
#[derive(Debug, Clone)]
pub struct ImageResolver {
    dir: PathBuf,
}

impl ImageResolver {
    /// Images of dataset `data_dir`: `--images DIR` when given, else `data_dir/images`.
    pub fn for_dataset(data_dir: &Path, images_override: Option<&Path>) -> Self {
        Self::new(
            images_override
                .map(Path::to_path_buf)
                .unwrap_or_else(|| data_dir.join("images")),
        )
    }

    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first of `<id>.jpg`, `<id>.png`, `<id>.jpeg` that exists. An id that is not
    /// a plain file name (`../x`, `/abs/path`) never becomes a path outside the folder.
    pub fn resolve(&self, image_id: &str) -> Result<PathBuf, NoImage> {
        if !crate::util::is_plain_name(image_id) {
            return Err(NoImage::UnsafeId {
                id: image_id.to_string(),
            });
        }
        IMAGE_EXTENSIONS
            .iter()
            .map(|ext| self.dir.join(format!("{image_id}.{ext}")))
            .find(|path| path.is_file())
            .ok_or_else(|| NoImage::NotFound {
                id: image_id.to_string(),
                dir: self.dir.clone(),
            })
    }

    /// Resolves and decodes a tweet's image; every failure is a [`NoImage`] reason.
    pub fn load(&self, image_id: Option<&str>) -> Result<(PathBuf, DynamicImage), NoImage> {
        let id = image_id.ok_or(NoImage::NoImageId)?;
        let path = self.resolve(id)?;
        let image = decode_image(&path)?;
        Ok((path, image))
    }
}

/// Why a tweet has no usable image. The model then runs text-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoImage {
    /// The tweet has no IMGID line.
    NoImageId,
    /// No `<id>.jpg|png|jpeg` in the images directory.
    NotFound { id: String, dir: PathBuf },
    /// The IMGID is not a plain file name (a path, `..`, a control character).
    UnsafeId { id: String },
    /// The file exists but cannot be decoded (empty, truncated, not an image).
    Unreadable { path: PathBuf, reason: String },
    /// The image was taken away on purpose (the counterfactual "no image" view).
    Removed,
}

impl fmt::Display for NoImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoImage::NoImageId => f.write_str("the tweet has no IMGID"),
            NoImage::NotFound { id, dir } => {
                write!(f, "no image {id}.jpg or {id}.png in {}", dir.display())
            }
            NoImage::Unreadable { path, reason } => {
                write!(f, "cannot decode {}: {reason}", path.display())
            }
            NoImage::UnsafeId { id } => write!(
                f,
                "IMGID {:?} is not a plain file name; the tweet is read without an image",
                id
            ),
            NoImage::Removed => f.write_str("the image is switched off"),
        }
    }
}

/// The largest image side decoded, in pixels (a photo from a phone is under 8,000).
pub const MAX_IMAGE_SIDE: u32 = 12_000;
/// The most memory one decoding may take.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Bounds that refuse a decompression bomb (a header claiming 20,000 × 20,000 pixels)
/// before anything is allocated.
fn decode_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Decodes an image file, guessing the format from its bytes before its extension.
/// A decoder panic on hostile input is caught and reported like any decoding error.
pub fn decode_image(path: &Path) -> Result<DynamicImage, NoImage> {
    let unreadable = |reason: String| NoImage::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let decode = || -> Result<DynamicImage, String> {
        let reader = image::ImageReader::open(path).map_err(|e| e.to_string())?;
        let mut reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
        reader.limits(decode_limits());
        reader.decode().map_err(|e| e.to_string())
    };
    match std::panic::catch_unwind(decode) {
        Ok(Ok(image)) if image.width() == 0 || image.height() == 0 => {
            Err(unreadable("the image is empty (0 pixels)".to_string()))
        }
        Ok(Ok(image)) => Ok(image),
        Ok(Err(reason)) => Err(unreadable(reason)),
        Err(_) => Err(unreadable(
            "the decoder failed on malformed data".to_string(),
        )),
    }
}

/// CLIP's mean and standard deviation per RGB channel (openai/clip-vit-base-patch32).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// Written exactly as HF publishes them; f32 rounding is what PyTorch uses too.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// CLIPImageProcessor's settings: resize the shortest side (bicubic), centre crop,
/// rescale to [0, 1], normalise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipPreprocess {
    pub shortest_edge: u32,
    pub crop_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ClipPreprocess {
    fn default() -> Self {
        Self {
            shortest_edge: 224,
            crop_size: 224,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

impl ClipPreprocess {
    /// CLIP's settings for a vision tower of `size`×`size` pixels (resize and crop to it).
    pub fn for_image_size(size: u32) -> Self {
        Self {
            shortest_edge: size,
            crop_size: size,
            ..Self::default()
        }
    }

    /// Preprocessed pixels, CHW f32 of length `3 × crop × crop`.
    pub fn apply(&self, image: &DynamicImage) -> Vec<f32> {
        let rgb = to_rgb_over_white(image);
        let (w, h) = rgb.dimensions();
        let (new_w, new_h) = shortest_edge_size(w, h, self.shortest_edge);
        let resized = resize_bicubic_pillow(&rgb, new_w, new_h);
        self.crop_and_normalise(&resized)
    }

    fn crop_and_normalise(&self, image: &RgbImage) -> Vec<f32> {
        let crop = self.crop_size as i64;
        let (w, h) = (image.width() as i64, image.height() as i64);
        // HF: top = (H - crop) // 2; a side shorter than the crop is padded with zeros.
        let top = (h - crop).div_euclid(2);
        let left = (w - crop).div_euclid(2);
        let plane = (crop * crop) as usize;
        let mut out = vec![0f32; 3 * plane];
        for y in 0..crop {
            for x in 0..crop {
                let (sy, sx) = (y + top, x + left);
                let pixel = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                    image.get_pixel(sx as u32, sy as u32).0
                } else {
                    [0, 0, 0]
                };
                let at = (y * crop + x) as usize;
                for c in 0..3 {
                    // HF rescales in f64 and casts to f32, then normalises in f32.
                    let scaled = (pixel[c] as f64 * (1.0 / 255.0)) as f32;
                    out[c * plane + at] = (scaled - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }
}

/// The size HF's `get_resize_output_image_size` gives for `shortest_edge`
/// (the long side is `int(edge * long / short)`, truncated).
pub fn shortest_edge_size(w: u32, h: u32, edge: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (edge as f64 * long as f64 / short as f64) as u32;
    if w <= h {
        (edge, new_long)
    } else {
        (new_long, edge)
    }
}

/// RGB pixels as `PIL.Image.convert("RGB")` after HF's `convert_to_rgb`: images with
/// an alpha channel are composited over white with Pillow's integer arithmetic.
pub fn to_rgb_over_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba: RgbaImage = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        dst.0 = composite_over_white(src.0);
    }
    out
}

/// Pillow's `ImagingAlphaComposite` of `src` over an opaque white destination.
fn composite_over_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return [255, 255, 255];
    }
    let a = a as u32;
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let shift_for_div255 = |v: u32| ((v >> 8) + v) >> 8;
    let channel = |src: u8| {
        let tmp = src as u32 * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
        (shift_for_div255(tmp) >> PRECISION_BITS) as u8
    };
    [channel(r), channel(g), channel(b)]
}

/// Fixed-point precision of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (a = −0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input pixel and the fixed-point weights of the inputs
/// it reads (Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc`).
struct Coefficients {
    taps: Vec<(usize, Vec<i32>)>,
}

impl Coefficients {
    fn new(in_size: u32, out_size: u32) -> Self {
        const SUPPORT: f64 = 2.0;
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let taps = (0..out_size)
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                // C's (int) truncates toward zero; negatives clamp to 0 anyway.
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                let weights: Vec<f64> = (xmin..xmax)
                    .map(|x| bicubic((x as f64 - center + 0.5) / filter_scale))
                    .collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|w| {
                        let w = if total != 0.0 { w / total } else { *w };
                        let scaled = w * (1u32 << PRECISION_BITS) as f64;
                        if w < 0.0 {
                            (scaled - 0.5) as i32
                        } else {
                            (scaled + 0.5) as i32
                        }
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect();
        Self { taps }
    }
}

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize(size, Image.BICUBIC)` on an 8-bit RGB image:
/// a horizontal pass, rounding to 8 bits, then a vertical pass. A pass whose size
/// does not change is skipped, as in Pillow.
pub fn resize_bicubic_pillow(image: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut current = image.clone();
    if new_w != w {
        let coeffs = Coefficients::new(w, new_w);
        let mut out = RgbImage::new(new_w, h);
        for y in 0..h {
            for (xx, (xmin, weights)) in coeffs.taps.iter().enumerate() {
                let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
                for (k, weight) in weights.iter().enumerate() {
                    let px = current.get_pixel((xmin + k) as u32, y).0;
                    for c in 0..3 {
                        sums[c] += px[c] as i32 * weight;
                    }
                }
                out.put_pixel(xx as u32, y, image::Rgb(sums.map(clip8)));
            }
        }
        current = out;
    }
    if new_h != h {
        let coeffs = Coefficients::new(h, new_h);
        let width = current.width();
        let mut out = RgbImage::new(width, new_h);
        for (yy, (ymin, weights)) in coeffs.taps.iter().enumerate() {
            for x in 0..width {
                let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
                for (k, weight) in weights.iter().enumerate() {
                    let px = current.get_pixel(x, (ymin + k) as u32).0;
                    for c in 0..3 {
                        sums[c] += px[c] as i32 * weight;
                    }
                }
                out.put_pixel(x, yy as u32, image::Rgb(sums.map(clip8)));
            }
        }
        current = out;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    }

    /// A PNG whose header claims `side` × `side` pixels over a few bytes of data.
    fn bomb(side: u32) -> Vec<u8> {
        let mut png = png_bytes(1, 1);
        // IHDR's width and height follow the 8-byte signature, length and type; its
        // CRC covers the type and data (17 bytes from offset 12).
        png[16..20].copy_from_slice(&side.to_be_bytes());
        png[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bomb.png", &bomb(20_000));
        let started = std::time::Instant::now();
        match decode_image(&path) {
            Err(NoImage::Unreadable { reason, .. }) => {
                assert!(reason.to_lowercase().contains("limit"), "{reason}")
            }
            other => panic!(
                "expected a refusal, got {:?}",
                other.map(|i| (i.width(), i.height()))
            ),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // A small image with the same construction still decodes.
        let path = write(dir.path(), "small.png", &bomb(1));
        let small = decode_image(&path).unwrap();
        assert_eq!((small.width(), small.height()), (1, 1));
    }

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn resolves_jpg_then_png_and_honours_an_override() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        write(&images, "7.png", &png_bytes(4, 4));
        let resolver = ImageResolver::for_dataset(dir.path(), None);
        assert_eq!(resolver.resolve("7"), Ok(images.join("7.png")));
        write(&images, "7.jpg", b"x");
        assert_eq!(resolver.resolve("7"), Ok(images.join("7.jpg")));
        assert!(matches!(
            resolver.resolve("8"),
            Err(NoImage::NotFound { .. })
        ));
        let other = ImageResolver::for_dataset(dir.path(), Some(dir.path()));
        assert!(other.resolve("7").is_err());
    }

    #[test]
    fn an_id_that_leaves_the_folder_is_no_image() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        write(dir.path(), "secret.png", &png_bytes(4, 4));
        let absolute = dir.path().join("secret");
        let resolver = ImageResolver::for_dataset(dir.path(), None);
        for id in ["../secret", absolute.to_str().unwrap(), "..", "a\u{1b}b"] {
            let reason = resolver.load(Some(id)).unwrap_err();
            assert!(matches!(reason, NoImage::UnsafeId { .. }), "{id}: {reason}");
            assert!(reason.to_string().contains("not a plain file name"));
        }
    }

    #[test]
    fn loads_a_good_image() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1.png", &png_bytes(10, 6));
        let (_, img) = ImageResolver::new(dir.path().into())
            .load(Some("1"))
            .unwrap();
        assert_eq!((img.width(), img.height()), (10, 6));
    }

    #[test]
    fn every_bad_image_is_a_no_image_reason_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = ImageResolver::new(dir.path().into());
        assert_eq!(resolver.load(None).unwrap_err(), NoImage::NoImageId);
        assert!(matches!(
            resolver.load(Some("404")),
            Err(NoImage::NotFound { .. })
        ));

        // Random bytes named .jpg.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        write(dir.path(), "noise.jpg", &noise);
        // A zero-byte file.
        write(dir.path(), "empty.jpg", b"");
        // A truncated PNG and a truncated JPEG.
        let png = png_bytes(64, 64);
        write(dir.path(), "cut.png", &png[..png.len() / 2]);
        let mut jpeg = Vec::new();
        RgbImage::from_pixel(64, 64, image::Rgb([200, 10, 10]))
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        write(dir.path(), "cutjpeg.jpg", &jpeg[..jpeg.len() / 3]);
        for id in ["noise", "empty", "cut", "cutjpeg"] {
            match resolver.load(Some(id)) {
                Err(NoImage::Unreadable { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{id}: expected Unreadable, got {:?}", other.map(|(p, _)| p)),
            }
        }
    }

    #[test]
    fn resize_size_follows_hf() {
        assert_eq!(shortest_edge_size(300, 200, 224), (336, 224));
        assert_eq!(shortest_edge_size(150, 400, 224), (224, 597));
        assert_eq!(shortest_edge_size(96, 96, 224), (224, 224));
        assert_eq!(shortest_edge_size(640, 480, 224), (298, 224));
    }

    #[test]
    fn bicubic_keeps_a_flat_image_flat_and_identity_is_a_copy() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 77]));
        let up = resize_bicubic_pillow(&flat, 224, 139);
        assert!(up.pixels().all(|p| p.0 == [10, 200, 77]));
        let down = resize_bicubic_pillow(&up, 11, 7);
        assert!(down.pixels().all(|p| p.0 == [10, 200, 77]));
        let same = resize_bicubic_pillow(&flat, 37, 23);
        assert_eq!(same, flat);
    }

    #[test]
    fn composite_matches_pillow_endpoints() {
        assert_eq!(composite_over_white([12, 34, 56, 255]), [12, 34, 56]);
        assert_eq!(composite_over_white([12, 34, 56, 0]), [255, 255, 255]);
        // Half-transparent black over white: Pillow's integer rounding gives 127.
        assert_eq!(composite_over_white([0, 0, 0, 128]), [127, 127, 127]);
    }

    #[test]
    fn preprocessing_gives_chw_normalised_pixels() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 80, image::Rgb([255, 0, 128])));
        let out = ClipPreprocess::default().apply(&img);
        assert_eq!(out.len(), 3 * 224 * 224);
        let plane = 224 * 224;
        assert!((out[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((out[plane] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        assert!((out[2 * plane + 500] - (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }
}
