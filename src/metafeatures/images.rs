//! What a task's images are like as stored, before any backbone resizes them: their native
//! resolution and how colourful they are. ZAP's and Meta-Album's task descriptions carry both;
//! the rest of graft's profile is measured at the backbone's input, where a 28 px grey digit
//! and a 300 px colour photo can look alike.
use crate::data::{decode_items, InputSpec, Item, ItemSource};
use serde::{Deserialize, Serialize};

/// At most this many training images are looked at (evenly spaced, so the same task always
/// gives the same traits).
pub const MAX_IMAGES: usize = 256;

/// The side of the square the images are reduced to before their colour is measured (area
/// averaging there also averages out pixel noise, which would otherwise read as colour).
const COLOUR_SIDE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageTraits {
    /// Median over the images of sqrt(width x height) as stored, in pixels.
    pub native_size: f64,
    /// Mean chroma, max(R, G, B) - min(R, G, B) in [0, 1], over the pixels of the images
    /// reduced to 32 x 32 (transparent pixels composited onto white): 0 for grey images,
    /// about 0.1-0.2 for natural photographs, more for saturated illustrations.
    pub colourfulness: f64,
}

/// Evenly spaced indices of at most `max` of `n` items (all of them when `n <= max`).
fn spread(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    (0..max).map(|i| i * n / max).collect()
}

fn stored_size(item: &Item) -> Option<f64> {
    let (w, h) = match &item.source {
        ItemSource::File(p) => image::image_dimensions(p).ok()?,
        ItemSource::Pixels { width, height, .. } => (*width, *height),
    };
    (w > 0 && h > 0).then(|| ((w as f64) * (h as f64)).sqrt())
}

/// Mean chroma of images decoded as RGB (`pixels` in CHW order, `n` images of `hw` pixels).
fn mean_chroma(pixels: &[u8], n: usize, hw: usize) -> f64 {
    let mut sum = 0u64;
    for i in 0..n {
        let img = &pixels[i * 3 * hw..(i + 1) * 3 * hw];
        for p in 0..hw {
            let (r, g, b) = (img[p], img[hw + p], img[2 * hw + p]);
            sum += (r.max(g).max(b) - r.min(g).min(b)) as u64;
        }
    }
    sum as f64 / (255.0 * (n * hw).max(1) as f64)
}

/// The traits of `items` (a task's training images); `None` when none of them can be read.
/// Unreadable images are left out, as the executor leaves them out with `--skip-bad`.
pub fn image_traits(items: &[Item]) -> Option<ImageTraits> {
    let pick: Vec<Item> = spread(items.len(), MAX_IMAGES).into_iter().map(|i| items[i].clone()).collect();
    let sizes: Vec<f64> = pick.iter().filter_map(stored_size).collect();
    if sizes.is_empty() {
        return None;
    }
    let spec = InputSpec { channels: 3, height: COLOUR_SIDE, width: COLOUR_SIDE };
    let set = decode_items(&pick, spec, true).ok()?;
    if set.n == 0 {
        return None;
    }
    Some(ImageTraits { native_size: crate::util::median(sizes), colourfulness: mean_chroma(&set.pixels, set.n, COLOUR_SIDE * COLOUR_SIDE) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pixels(w: u32, h: u32, channels: u8, data: Vec<u8>) -> Item {
        Item { source: ItemSource::Pixels { data: Arc::from(data), width: w, height: h, channels, name: "t#0".into() }, label: Some(0) }
    }

    /// Grey images have no chroma whatever their content; a pure red image has chroma 1; the
    /// native size is the median geometric side, however the images will be resized later.
    #[test]
    fn grey_is_zero_red_is_one_and_size_is_the_median_side() {
        let grey = pixels(28, 28, 1, (0..28 * 28).map(|i| (i % 251) as u8).collect());
        let grey_rgb = pixels(40, 10, 3, (0..400).flat_map(|i| [(i % 200) as u8; 3]).collect());
        let t = image_traits(&[grey.clone(), grey_rgb, grey]).unwrap();
        assert_eq!(t.colourfulness, 0.0);
        assert_eq!(t.native_size, 28.0);
        let red = pixels(64, 64, 3, (0..64 * 64).flat_map(|_| [255u8, 0, 0]).collect());
        let t = image_traits(&[red]).unwrap();
        assert!((t.colourfulness - 1.0).abs() < 1e-12, "{}", t.colourfulness);
        assert_eq!(t.native_size, 64.0);
        // half red, half grey images: half the chroma
        let mut half: Vec<u8> = (0..32 * 16).flat_map(|_| [255u8, 0, 0]).collect();
        half.extend((0..32 * 16).flat_map(|_| [90u8; 3]));
        let t = image_traits(&[pixels(32, 32, 3, half)]).unwrap();
        assert!((t.colourfulness - 0.5).abs() < 1e-12, "{}", t.colourfulness);
    }

    #[test]
    fn at_most_max_images_evenly_spread_and_none_when_nothing_is_readable() {
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        let s = spread(1000, MAX_IMAGES);
        assert_eq!(s.len(), MAX_IMAGES);
        assert_eq!((s[0], s[1], *s.last().unwrap()), (0, 3, 996));
        let missing = Item { source: ItemSource::File("/no/such/image.png".into()), label: Some(0) };
        assert_eq!(image_traits(&[missing]), None);
        assert_eq!(image_traits(&[]), None);
    }
}
