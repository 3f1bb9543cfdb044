//! Decoding images into the backbone's input (channels, size) as 8-bit CHW, and producing
//! normalised float batches, with optional augmentation.
use super::augment::Augment;
use super::folder::{Item, ItemSource};
use crate::error::{GraftError, Result};
use image::{DynamicImage, GenericImageView};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A backbone's input shape.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// Per-channel mean and standard deviation, applied to pixels scaled to [0, 1].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalisation {
    pub fn identity(c: usize) -> Self {
        Normalisation { mean: vec![0.0; c], std: vec![1.0; c] }
    }
}

/// Decoded images, 8-bit, CHW, all of one shape.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
    pub n: usize,
    pub spec: InputSpec,
    /// Files that failed to decode and were skipped (`--skip-bad`).
    pub skipped: Vec<String>,
    /// sha256 over the sorted list of (source name, label, content hash).
    pub fingerprint: String,
    /// Each image's source (file path, or `file#index` for images inside a file), in order;
    /// empty for synthetic sets.
    pub names: Vec<String>,
}

impl ImageSet {
    /// A set of images made in memory (benchmarks, tests, synthetic inputs): `pixels` holds
    /// `labels.len()` CHW images of `spec`; no file names, nothing skipped, an empty fingerprint.
    pub fn in_memory(pixels: Vec<u8>, labels: Vec<i64>, spec: InputSpec) -> ImageSet {
        let n = labels.len();
        ImageSet { pixels, labels, n, spec, skipped: Vec::new(), fingerprint: String::new(), names: Vec::new() }
    }

    pub fn image_len(&self) -> usize {
        self.spec.channels * self.spec.height * self.spec.width
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.pixels[i * l..(i + 1) * l]
    }

    /// Normalised float batch (N*C*H*W) of the given images, augmented when `aug` is given.
    /// Each image's augmentation draws from its own stream `(seed, epoch, index)`, so the result
    /// does not depend on thread scheduling.
    pub fn batch(&self, idx: &[usize], norm: &Normalisation, aug: Option<(&Augment, u64)>) -> Vec<f32> {
        self.batch_named(idx, idx, norm, aug)
    }

    /// [`ImageSet::batch`] of the images at `idx`, whose augmentation streams are named by
    /// `names` (their indices in a larger collection this set is a part of).
    fn batch_named(&self, idx: &[usize], names: &[usize], norm: &Normalisation, aug: Option<(&Augment, u64)>) -> Vec<f32> {
        let l = self.image_len();
        let mut out = vec![0f32; idx.len() * l];
        let spec = self.spec;
        out.par_chunks_mut(l).zip(idx.par_iter().zip(names.par_iter())).for_each(|(dst, (&i, &name))| {
            let src = self.image(i);
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s as f32 / 255.0;
            }
            if let Some((a, stream)) = aug {
                let mut rng = crate::util::rng_for(stream, &format!("aug-{name}"));
                a.apply(dst, spec, &mut rng);
            }
            normalise_in_place(dst, spec, norm);
        });
        out
    }

    /// Per-channel mean and std of the pixels in [0, 1].
    pub fn channel_stats(&self) -> Normalisation {
        let mut acc = ChannelSums::new(self.spec);
        for i in 0..self.n {
            acc.add(self.image(i));
        }
        acc.finish()
    }

    /// Images per class 0..k (unlabelled images are not counted).
    pub fn class_counts(&self, k: usize) -> Vec<usize> {
        let mut c = vec![0usize; k];
        for &l in &self.labels {
            if l >= 0 && (l as usize) < k {
                c[l as usize] += 1;
            }
        }
        c
    }

    /// The subset of images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        let l = self.image_len();
        let mut pixels = Vec::with_capacity(idx.len() * l);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        let names = if self.names.len() == self.n { idx.iter().map(|&i| self.names[i].clone()).collect() } else { Vec::new() };
        ImageSet { pixels, labels, n: idx.len(), spec: self.spec, skipped: Vec::new(), fingerprint: self.fingerprint.clone(), names }
    }

    /// Every image mirrored left to right (labels and the rest unchanged).
    pub fn hflipped(&self) -> ImageSet {
        let w = self.spec.width;
        let mut pixels = self.pixels.clone();
        if w > 0 {
            for row in pixels.chunks_mut(w) {
                row.reverse();
            }
        }
        ImageSet { pixels, ..self.clone() }
    }
}

/// Running per-channel sums of pixels in [0, 1], image after image (the same order, hence the
/// same bits, whether the images are in memory or streamed).
struct ChannelSums {
    spec: InputSpec,
    sum: Vec<f64>,
    sq: Vec<f64>,
    n: usize,
}

impl ChannelSums {
    fn new(spec: InputSpec) -> Self {
        ChannelSums { spec, sum: vec![0.0; spec.channels], sq: vec![0.0; spec.channels], n: 0 }
    }
    fn add(&mut self, img: &[u8]) {
        let hw = self.spec.height * self.spec.width;
        for ch in 0..self.spec.channels {
            for &p in &img[ch * hw..(ch + 1) * hw] {
                let v = p as f64 / 255.0;
                self.sum[ch] += v;
                self.sq[ch] += v * v;
            }
        }
        self.n += 1;
    }
    fn finish(&self) -> Normalisation {
        let cnt = (self.n * self.spec.height * self.spec.width).max(1) as f64;
        let mean: Vec<f32> = self.sum.iter().map(|s| (s / cnt) as f32).collect();
        let std = self.sq.iter().zip(&mean).map(|(q, m)| ((q / cnt - (*m as f64).powi(2)).max(1e-12)).sqrt() as f32).collect();
        Normalisation { mean, std }
    }
}

/// Images that training reads batch by batch: decoded in memory ([`ImageSet`]) or streamed from
/// their files ([`StreamedImages`]). Both give the same batches for the same indices.
pub trait Images: Sync {
    fn count(&self) -> usize;
    fn input(&self) -> InputSpec;
    /// Normalised float batch (N*C*H*W) of the images at `idx`, as [`ImageSet::batch`].
    fn float_batch(&self, idx: &[usize], norm: &Normalisation, aug: Option<(&Augment, u64)>) -> Result<Vec<f32>>;
    /// Per-channel mean and std of every image's pixels in [0, 1].
    fn channel_stats(&self) -> Normalisation;
    /// sha256 over the images' contents and labels, in order.
    fn fingerprint(&self) -> &str;
    /// Messages of the files skipped as unreadable (`--skip-bad`).
    fn skipped(&self) -> &[String];
}

/// Whether `n` images of `spec` fit in `limit_mb` MiB as 8-bit pixels.
pub fn fits_in_memory(n: usize, spec: InputSpec, limit_mb: usize) -> bool {
    n * spec.channels * spec.height * spec.width <= limit_mb << 20
}

/// `items` decoded into memory when they fit in `limit_mb` MiB ([`fits_in_memory`]), else
/// streamed from their files ([`StreamedImages`]): the same batches either way.
pub fn open_images(items: &[Item], spec: InputSpec, skip_bad: bool, limit_mb: usize) -> Result<Box<dyn Images>> {
    Ok(if fits_in_memory(items.len(), spec, limit_mb) {
        Box::new(decode_items(items, spec, skip_bad)?)
    } else {
        Box::new(StreamedImages::open(items, spec, skip_bad)?)
    })
}

impl Images for ImageSet {
    fn count(&self) -> usize {
        self.n
    }
    fn input(&self) -> InputSpec {
        self.spec
    }
    fn float_batch(&self, idx: &[usize], norm: &Normalisation, aug: Option<(&Augment, u64)>) -> Result<Vec<f32>> {
        Ok(self.batch(idx, norm, aug))
    }
    fn channel_stats(&self) -> Normalisation {
        ImageSet::channel_stats(self)
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// Images decoded from their files again for every batch, so memory holds one batch whatever
/// the number of images. [`StreamedImages::open`] reads every file once first, in chunks: it
/// drops unreadable files (with `skip_bad`) or names the first one, and computes the
/// fingerprint and channel statistics the in-memory [`ImageSet`] of the same items would have.
pub struct StreamedImages {
    items: Vec<Item>,
    spec: InputSpec,
    fingerprint: String,
    /// Files that failed to decode and were skipped (`--skip-bad`).
    skipped: Vec<String>,
    stats: Normalisation,
}

/// Default limit (MiB of 8-bit pixels) under which a pretraining pool is decoded into memory;
/// past it, it is streamed ([`StreamedImages`]).
pub const IN_MEMORY_LIMIT_MB: usize = 1024;

/// Images decoded at once while [`StreamedImages::open`] scans.
const SCAN_CHUNK: usize = 256;

impl StreamedImages {
    pub fn open(items: &[Item], spec: InputSpec, skip_bad: bool) -> Result<Self> {
        let mut kept = Vec::with_capacity(items.len());
        let mut sums = ChannelSums::new(spec);
        let mut scan = Scan::new(skip_bad);
        for chunk in items.chunks(SCAN_CHUNK) {
            scan.decode(chunk, spec, |it, _, px| {
                sums.add(&px);
                kept.push(it.clone());
            })?;
        }
        let (fingerprint, skipped) = scan.finish();
        Ok(StreamedImages { items: kept, spec, fingerprint, skipped, stats: sums.finish() })
    }
}

impl Images for StreamedImages {
    fn count(&self) -> usize {
        self.items.len()
    }
    fn input(&self) -> InputSpec {
        self.spec
    }
    fn float_batch(&self, idx: &[usize], norm: &Normalisation, aug: Option<(&Augment, u64)>) -> Result<Vec<f32>> {
        let items: Vec<Item> = idx.iter().map(|&i| self.items[i].clone()).collect();
        // every file decoded during `open`; one that fails now changed on disk since
        let set = decode_items(&items, self.spec, false)?;
        let local: Vec<usize> = (0..idx.len()).collect();
        Ok(set.batch_named(&local, idx, norm, aug))
    }
    fn channel_stats(&self) -> Normalisation {
        self.stats.clone()
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

pub fn normalise_in_place(x: &mut [f32], spec: InputSpec, norm: &Normalisation) {
    let hw = spec.height * spec.width;
    for ch in 0..spec.channels {
        let (m, s) = (norm.mean[ch.min(norm.mean.len() - 1)], norm.std[ch.min(norm.std.len() - 1)]);
        for v in &mut x[ch * hw..(ch + 1) * hw] {
            *v = (*v - m) / s;
        }
    }
}

/// Composite an image with alpha onto white, then convert to the requested channel count.
fn to_channels(img: DynamicImage, channels: usize) -> Vec<u8> {
    let rgba_needed = img.color().has_alpha();
    let rgb = if rgba_needed {
        let rgba = img.to_rgba8();
        let (w, h) = rgba.dimensions();
        let mut out = image::RgbImage::new(w, h);
        for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
            let a = p[3] as f32 / 255.0;
            for k in 0..3 {
                o[k] = (p[k] as f32 * a + 255.0 * (1.0 - a)).round() as u8;
            }
        }
        DynamicImage::ImageRgb8(out)
    } else {
        img
    };
    match channels {
        1 => rgb.to_luma8().into_raw(),
        _ => rgb.to_rgb8().into_raw(),
    }
}

/// Decode an image file's bytes and turn it upright as its EXIF orientation says (a phone
/// photo is often stored sideways with a tag saying so; image viewers, and Hugging Face
/// `datasets`, show it upright, and the same object should not reach the network at four
/// angles depending on how the phone was held). Files without the tag are unchanged.
///
/// An image whose header declares more than [`MAX_DECODED_BYTES`] of pixels is refused before
/// anything is allocated: decoding straight from the decoder skips the `image` crate's own
/// allocation limit, and a corrupt or hostile header (a few bytes claiming 100 000 × 100 000
/// pixels) would otherwise abort the process on a failed allocation.
pub fn decode_upright(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    match decode_with_image(bytes) {
        Ok(img) => Ok(img),
        // the `image` crate reads 8- and 16-bit unsigned TIFF samples only; scientific images
        // (microscopy, remote sensing) often hold float or signed samples
        Err(e) if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") => match decode_tiff_samples(bytes) {
            Ok(img) => Ok(img),
            Err(e2) => Err(format!("{e}; as raw TIFF samples: {e2}")),
        },
        Err(e) => Err(e),
    }
}

/// A TIFF the `image` crate cannot read (float, signed or 32/64-bit integer samples), read with
/// the `tiff` crate: gray or RGB (alpha dropped), each image's own range of finite values (its
/// minimum to its maximum over every colour sample) scaled to 0-255, since such samples carry
/// no fixed white level. Only the first page is read.
fn decode_tiff_samples(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;
    let mut d = Decoder::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let (w, h) = d.dimensions().map_err(|e| e.to_string())?;
    let ct = d.colortype().map_err(|e| e.to_string())?;
    let (samples, colours) = match ct {
        ColorType::Gray(_) => (1, 1),
        ColorType::GrayA(_) => (2, 1),
        ColorType::RGB(_) => (3, 3),
        ColorType::RGBA(_) => (4, 3),
        other => return Err(format!("colour type {other:?} is not supported (gray or RGB samples are)")),
    };
    // as f64 values, checked before decoding anything
    let need = w as u64 * h as u64 * samples as u64 * 8;
    if need > MAX_DECODED_BYTES {
        return Err(format!("its header declares {w} x {h} pixels, above what graft decodes for one image; resize it"));
    }
    let v: Vec<f64> = match d.read_image().map_err(|e| e.to_string())? {
        DecodingResult::U8(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::U32(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::U64(v) => v.into_iter().map(|x| x as f64).collect(),
        DecodingResult::I8(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::I32(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::I64(v) => v.into_iter().map(|x| x as f64).collect(),
        DecodingResult::F16(v) => v.into_iter().map(|x| x.to_f64()).collect(),
        DecodingResult::F32(v) => v.into_iter().map(f64::from).collect(),
        DecodingResult::F64(v) => v,
    };
    let n = w as usize * h as usize;
    if v.len() < n * samples {
        return Err(format!("{} samples for {w} x {h} pixels of {samples} samples each", v.len()));
    }
    let colour = |i: usize, c: usize| v[i * samples + c];
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..n {
        for c in 0..colours {
            let x = colour(i, c);
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
    }
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let to_u8 = |x: f64| if x.is_finite() { ((x - lo) * scale).round().clamp(0.0, 255.0) as u8 } else { 0 };
    let mut out = Vec::with_capacity(n * colours);
    for i in 0..n {
        for c in 0..colours {
            out.push(to_u8(colour(i, c)));
        }
    }
    let img = if colours == 1 {
        image::GrayImage::from_raw(w, h, out).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8)
    };
    img.ok_or_else(|| "pixel buffer does not match the image size".to_string())
}

fn decode_with_image(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    use image::ImageDecoder;
    let mut dec = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .into_decoder()
        .map_err(|e| e.to_string())?;
    let ((w, h), need) = (dec.dimensions(), dec.total_bytes());
    if need > MAX_DECODED_BYTES {
        return Err(format!(
            "its header declares {w} x {h} pixels ({} MiB decoded), above the {} MiB graft decodes for one image; resize it, or check the file is not corrupt",
            need >> 20,
            MAX_DECODED_BYTES >> 20
        ));
    }
    let orientation = dec.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The most decoded pixel bytes [`decode_upright`] accepts for one image (512 MiB, the `image`
/// crate's default allocation limit: 11 585 × 11 585 RGB at 32 bits a channel, or about
/// 13 000 × 13 000 RGBA at 8).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

fn decode_one(item: &Item, spec: InputSpec) -> std::result::Result<(Vec<u8>, [u8; 32]), String> {
    let (img, digest) = match &item.source {
        ItemSource::File(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            // the JPEG decoder fills a truncated scan with grey and succeeds; such a file is
            // as corrupt as one it rejects
            if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(&bytes) {
                return Err(format!("{}: truncated JPEG (the image data ends before its end-of-image marker)", p.display()));
            }
            let img = decode_upright(&bytes).map_err(|e| format!("{}: cannot decode image: {e}", p.display()))?;
            (img, digest)
        }
        ItemSource::Pixels { data, width, height, channels, name } => {
            let digest: [u8; 32] = Sha256::digest(&data[..]).into();
            let img = match channels {
                1 => image::GrayImage::from_raw(*width, *height, data.to_vec()).map(DynamicImage::ImageLuma8),
                3 => image::RgbImage::from_raw(*width, *height, data.to_vec()).map(DynamicImage::ImageRgb8),
                _ => None,
            }
            .ok_or_else(|| format!("{name}: pixel buffer does not match its shape"))?;
            (img, digest)
        }
    };
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("{}: image has zero size", item.source.display()));
    }
    let img = if w as usize != spec.width || h as usize != spec.height {
        img.resize_exact(spec.width as u32, spec.height as u32, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let hwc = to_channels(img, spec.channels);
    // HWC -> CHW
    let (c, hw) = (spec.channels, spec.height * spec.width);
    let mut chw = vec![0u8; c * hw];
    for p in 0..hw {
        for ch in 0..c {
            chw[ch * hw + p] = hwc[p * c + ch];
        }
    }
    Ok((chw, digest))
}

/// Whether a JPEG stream reaches its end-of-image marker: walks the marker segments (skipping
/// each by its length, so an EXIF thumbnail's markers are not mistaken for the image's) and the
/// entropy-coded data after every start-of-scan (where 0xFF is followed only by a stuffed 0x00
/// or a restart marker), until EOI. A file cut anywhere before EOI is incomplete.
pub fn jpeg_is_complete(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        // the next marker, allowing fill bytes 0xFF
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&m) = b.get(i) else { return false };
        i += 1;
        match m {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                if i + 2 > b.len() {
                    return false;
                }
                let len = ((b[i] as usize) << 8) | b[i + 1] as usize;
                if len < 2 || i + len > b.len() {
                    return false;
                }
                i += len;
                if m == 0xDA {
                    // entropy-coded data: runs until 0xFF followed by something other than a
                    // stuffed zero or a restart marker
                    loop {
                        while i < b.len() && b[i] != 0xFF {
                            i += 1;
                        }
                        match b.get(i + 1) {
                            None => return false,
                            Some(0x00) | Some(0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

/// Decode items in parallel into `spec`'s channels and size. A file that cannot be read or
/// decoded is an error naming it, unless `skip_bad`, in which case it is skipped and counted.
pub fn decode_items(items: &[Item], spec: InputSpec, skip_bad: bool) -> Result<ImageSet> {
    let l = spec.channels * spec.height * spec.width;
    let mut pixels = Vec::with_capacity(items.len() * l);
    let mut labels = Vec::with_capacity(items.len());
    let mut names = Vec::with_capacity(items.len());
    let mut scan = Scan::new(skip_bad);
    scan.decode(items, spec, |it, label, px| {
        pixels.extend_from_slice(&px);
        labels.push(label);
        names.push(it.source.display());
    })?;
    let (fingerprint, skipped) = scan.finish();
    let n = labels.len();
    Ok(ImageSet { pixels, labels, n, spec, skipped, fingerprint, names })
}

/// Decoding a list of items, in one call or chunk after chunk: the fingerprint over every
/// decoded image (content digest, then label, in order) and the files skipped as unreadable.
struct Scan {
    fp: Sha256,
    skipped: Vec<String>,
    skip_bad: bool,
}

impl Scan {
    fn new(skip_bad: bool) -> Self {
        Scan { fp: Sha256::new(), skipped: Vec::new(), skip_bad }
    }

    /// Decodes `items` in parallel into `spec`, then hands each image to `keep(item, label,
    /// CHW pixels)` in order (label -1: unlabelled). A file that cannot be read or decoded is an
    /// error naming it, unless `skip_bad`, in which case it is skipped and counted.
    fn decode(&mut self, items: &[Item], spec: InputSpec, mut keep: impl FnMut(&Item, i64, Vec<u8>)) -> Result<()> {
        // per item: (CHW pixels, the file's digest), or why it could not be decoded
        type Decoded = std::result::Result<(Vec<u8>, [u8; 32]), String>;
        let decoded: Vec<Decoded> = items.par_iter().map(|it| decode_one(it, spec)).collect();
        for (it, d) in items.iter().zip(decoded) {
            match d {
                Ok((px, digest)) => {
                    let label = it.label.map(|l| l as i64).unwrap_or(-1);
                    self.fp.update(digest);
                    self.fp.update(label.to_le_bytes());
                    keep(it, label, px);
                }
                Err(msg) if self.skip_bad => self.skipped.push(msg),
                Err(msg) => {
                    return Err(GraftError::Data(format!("{msg}; fix or remove the file, or pass --skip-bad to skip unreadable images")))
                }
            }
        }
        Ok(())
    }

    /// The fingerprint (hex) and the skipped files' messages.
    fn finish(self) -> (String, Vec<String>) {
        (hex::encode(self.fp.finalize()), self.skipped)
    }
}
