//! The loader: split folders, hold-out, --test, unlabelled/, IDX files, and every bad input.
mod common;
use common::make_folder;
use graft::data::{decode_items, load_dataset, InputSpec, LoadOptions};
use graft::GraftError;

fn spec() -> InputSpec {
    InputSpec { channels: 3, height: 16, width: 16 }
}

fn data_err(r: graft::Result<graft::data::Dataset>) -> String {
    match r {
        Err(e @ GraftError::Data(_)) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
        Err(e) => panic!("expected a data error, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn split_folders_and_sorted_classes() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("train", 5), ("test", 3), ("val", 2)], 3, 16);
    std::fs::create_dir_all(t.path().join("unlabelled/deep/er")).unwrap();
    common::synth_image(0, 1, 16).save(t.path().join("unlabelled/deep/er/u.png")).unwrap();
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    assert_eq!(ds.classes, vec!["class0", "class1", "class2"]);
    assert_eq!((ds.train.len(), ds.test.len(), ds.val.len(), ds.unlabelled.len()), (15, 9, 6, 1));
    assert_eq!(ds.split.method, "folders");
    let set = decode_items(&ds.train, spec(), false).unwrap();
    assert_eq!(set.n, 15);
    assert_eq!(set.pixels.len(), 15 * 3 * 16 * 16);
    // decoding resizes and converts channels
    let grey = decode_items(&ds.test, InputSpec { channels: 1, height: 28, width: 28 }, false).unwrap();
    assert_eq!(grey.pixels.len(), 9 * 28 * 28);
}

#[test]
fn holdout_is_stratified_and_seeded() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("", 10)], 3, 16);
    let mut o = LoadOptions::new(t.path());
    o.test_fraction = 0.3;
    o.seed = 5;
    let a = load_dataset(&o).unwrap();
    assert_eq!(a.split.method, "holdout");
    assert_eq!(a.test.len(), 9);
    assert_eq!(a.train_counts(), vec![7, 7, 7]);
    let b = load_dataset(&o).unwrap();
    let names = |d: &graft::data::Dataset| d.test.iter().map(|i| i.source.display()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    o.seed = 6;
    let c = load_dataset(&o).unwrap();
    assert_ne!(names(&a), names(&c));
}

#[test]
fn explicit_test_tree() {
    let t = tempfile::tempdir().unwrap();
    make_folder(&t.path().join("a"), &[("", 4)], 2, 16);
    make_folder(&t.path().join("b"), &[("", 3)], 2, 16);
    let mut o = LoadOptions::new(t.path().join("a"));
    o.test = Some(t.path().join("b"));
    let ds = load_dataset(&o).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (8, 6));
    assert_eq!(ds.split.method, "explicit-test");
}

fn write_idx(path: &std::path::Path, dims: &[u32], data: &[u8]) {
    let mut b = vec![0u8, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn idx_files_load() {
    let t = tempfile::tempdir().unwrap();
    let n = 12;
    let imgs: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    write_idx(&t.path().join("train-images-idx3-ubyte"), &[n as u32, 28, 28], &imgs);
    write_idx(&t.path().join("train-labels-idx1-ubyte"), &[n as u32], &labels);
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    assert_eq!(ds.classes, vec!["0", "1", "2"]);
    assert_eq!(ds.train.len() + ds.test.len(), n);
    let set = decode_items(&ds.train, InputSpec { channels: 1, height: 28, width: 28 }, false).unwrap();
    assert_eq!(set.n, ds.train.len());
    // a truncated IDX file is refused, naming it
    write_idx(&t.path().join("train-labels-idx1-ubyte"), &[n as u32 + 1], &labels);
    let e = data_err(load_dataset(&LoadOptions::new(t.path())));
    assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
}

#[test]
fn missing_and_empty_folders() {
    let t = tempfile::tempdir().unwrap();
    let e = data_err(load_dataset(&LoadOptions::new(t.path().join("nope"))));
    assert!(e.contains("does not exist") && e.contains("nope"), "{e}");
    let e = data_err(load_dataset(&LoadOptions::new(t.path())));
    assert!(e.contains("no class subfolders"), "{e}");
}

#[test]
fn class_without_images_and_single_class() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("", 3)], 2, 16);
    std::fs::create_dir_all(t.path().join("zempty")).unwrap();
    let e = data_err(load_dataset(&LoadOptions::new(t.path())));
    assert!(e.contains("zempty") && e.contains("no images"), "{e}");
    let t2 = tempfile::tempdir().unwrap();
    make_folder(t2.path(), &[("", 3)], 1, 16);
    let e = data_err(load_dataset(&LoadOptions::new(t2.path())));
    assert!(e.contains("only one class"), "{e}");
}

#[test]
fn corrupt_image_is_named_or_skipped() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("train", 3), ("test", 2)], 2, 16);
    let bad = t.path().join("train/class1/broken.png");
    std::fs::write(&bad, b"this is not a png").unwrap();
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    match decode_items(&ds.train, spec(), false) {
        Err(e @ GraftError::Data(_)) => {
            let m = e.to_string();
            assert!(m.contains("broken.png") && m.contains("--skip-bad"), "{m}");
        }
        other => panic!("expected a data error, got {:?}", other.map(|s| s.n)),
    }
    let set = decode_items(&ds.train, spec(), true).unwrap();
    assert_eq!(set.n, 6);
    assert_eq!(set.skipped.len(), 1);
    assert!(set.skipped[0].contains("broken.png"));
}

/// A BMP of a few bytes whose header declares `w` × `h` pixels at 24 bits.
fn bmp_declaring(w: i32, h: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&(54u32 + 16).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b.extend_from_slice(&[0x80; 16]);
    b
}

/// A header declaring more pixels than graft decodes for one image is an error naming the file
/// and the size, not an allocation that aborts the process (found by `tests/fuzz.rs`: a mutated
/// header asked for 72 GB).
#[test]
fn an_image_declaring_an_enormous_size_is_refused_before_decoding() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("train", 3), ("test", 2)], 2, 16);
    std::fs::write(t.path().join("train/class1/huge.bmp"), bmp_declaring(60_000, 60_000)).unwrap();
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    match decode_items(&ds.train, spec(), false) {
        Err(e @ GraftError::Data(_)) => {
            let m = e.to_string();
            assert!(m.contains("huge.bmp") && m.contains("60000 x 60000") && m.contains("MiB"), "{m}");
        }
        other => panic!("expected a data error, got {:?}", other.map(|s| s.n)),
    }
    let set = decode_items(&ds.train, spec(), true).unwrap();
    assert_eq!(set.skipped.len(), 1);
    // a small image still decodes
    assert!(graft::data::images::decode_upright(&bmp_declaring(2, 2)).is_ok());
}

#[test]
fn task_sampler_is_seeded() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("train", 10), ("test", 4)], 4, 16);
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    let spec = graft::data::task::TaskSpec {
        classes: None,
        n_classes: 2,
        shots: 3,
        unlabelled: 5,
        test_per_class: Some(2),
        val_per_class: 0,
        imbalance: 1.0,
    };
    let a = graft::data::task::sample_task(&ds, &spec, 1).unwrap();
    let b = graft::data::task::sample_task(&ds, &spec, 1).unwrap();
    assert_eq!(a.classes, b.classes);
    assert_eq!((a.train.len(), a.test.len(), a.unlabelled.len()), (6, 4, 5));
    assert!(a.unlabelled.iter().all(|i| i.label.is_none()));
    let names = |d: &graft::data::Dataset| d.train.iter().map(|i| i.source.display()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
}

#[test]
fn gif_and_jfif_images_are_read_and_other_files_are_named() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("", 3)], 2, 16);
    // a GIF (palette) and a JPEG under Windows' .jfif name count as images
    let gif = common::synth_image(0, 99, 16);
    image::DynamicImage::ImageRgb8(gif.clone()).save_with_format(t.path().join("class0/extra.gif"), image::ImageFormat::Gif).unwrap();
    image::DynamicImage::ImageRgb8(gif).save_with_format(t.path().join("class1/extra.jfif"), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(t.path().join("class0/notes.txt"), "x").unwrap();
    std::fs::write(t.path().join("class1/photo.heic"), "x").unwrap();
    std::fs::write(t.path().join("class1/.DS_Store"), "x").unwrap();
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    assert_eq!(ds.train.len() + ds.test.len(), 8);
    let all: Vec<_> = ds.train.iter().chain(&ds.test).cloned().collect();
    let set = decode_items(&all, spec(), false).unwrap();
    assert_eq!((set.n, set.skipped.len()), (8, 0));
    // the files passed over are counted by kind; hidden files are not mentioned
    let ignored = vec![t.path().join("class0/notes.txt"), t.path().join("class1/photo.heic")];
    let m = graft::data::folder::ignored_summary("data", t.path(), &ignored).unwrap();
    assert!(m.contains("2 files passed over") && m.contains("1 .heic") && m.contains("1 .txt") && m.contains("gif"), "{m}");
    assert!(graft::data::folder::ignored_summary("data", t.path(), &[]).is_none());
    // a class holding only files of other kinds names one of them
    let t2 = tempfile::tempdir().unwrap();
    make_folder(t2.path(), &[("", 3)], 2, 16);
    std::fs::create_dir_all(t2.path().join("zheic")).unwrap();
    std::fs::write(t2.path().join("zheic/a.heic"), "x").unwrap();
    let e = data_err(load_dataset(&LoadOptions::new(t2.path())));
    assert!(e.contains("zheic") && e.contains("a.heic") && e.contains("PNG"), "{e}");
}

#[test]
fn a_class_without_a_test_image_is_refused_before_training() {
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("", 5)], 2, 16);
    std::fs::create_dir_all(t.path().join("lonely")).unwrap();
    common::synth_image(2, 0, 16).save(t.path().join("lonely/only.png")).unwrap();
    // loading (and so recommending) works; the class's one image is kept for training
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    assert_eq!(ds.untested_classes(), vec!["lonely"]);
    let e = ds.check_every_class_tested().unwrap_err().to_string();
    assert!(e.contains("`lonely`") && e.contains("--test DIR") && e.contains("hold-out"), "{e}");
    // the executor's decode step refuses it
    match graft::data::decode_dataset(&ds, spec(), false, 0.0, 0) {
        Err(e @ GraftError::Data(_)) => assert!(e.to_string().contains("`lonely`"), "{e}"),
        Err(e) => panic!("expected a data error, got {e}"),
        Ok(_) => panic!("a test split without class `lonely` was accepted"),
    }
    // with a second image, the class is tested
    common::synth_image(2, 1, 16).save(t.path().join("lonely/second.png")).unwrap();
    let ds = load_dataset(&LoadOptions::new(t.path())).unwrap();
    assert!(ds.untested_classes().is_empty());
    ds.check_every_class_tested().unwrap();
}

/// A JPEG 16 wide and 8 high, black on the left and white on the right, whose EXIF says
/// "rotate 90° clockwise to view" (orientation 6, as a phone held upright writes).
fn sideways_jpeg(orientation: Option<u16>) -> Vec<u8> {
    use image::ImageEncoder;
    let img = image::GrayImage::from_fn(16, 8, |x, _| image::Luma([if x < 8 { 0 } else { 255 }]));
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
    if let Some(o) = orientation {
        let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&[(o >> 8) as u8, o as u8, 0, 0, 0, 0, 0, 0]);
        enc.set_exif_metadata(exif).unwrap();
    }
    enc.write_image(img.as_raw(), 16, 8, image::ExtendedColorType::L8).unwrap();
    out
}

#[test]
fn exif_orientation_turns_a_photo_upright() {
    use image::GenericImageView;
    let up = graft::data::images::decode_upright(&sideways_jpeg(Some(6))).unwrap();
    assert_eq!(up.dimensions(), (8, 16));
    let g = up.to_luma8();
    // the left (black) half is now on top
    assert!(g.get_pixel(4, 2)[0] < 40 && g.get_pixel(4, 13)[0] > 215, "{:?} {:?}", g.get_pixel(4, 2), g.get_pixel(4, 13));
    // without the tag, the same pixels come back as stored
    let plain = graft::data::images::decode_upright(&sideways_jpeg(None)).unwrap();
    assert_eq!(plain.dimensions(), (16, 8));
    // and through the loader: the file's digest is of its bytes, its pixels upright
    let t = tempfile::tempdir().unwrap();
    make_folder(t.path(), &[("", 2)], 2, 16);
    std::fs::write(t.path().join("class0/phone.jpg"), sideways_jpeg(Some(6))).unwrap();
    let item = graft::data::Item { source: graft::data::ItemSource::File(t.path().join("class0/phone.jpg")), label: Some(0) };
    let set = decode_items(&[item], InputSpec { channels: 1, height: 16, width: 8 }, false).unwrap();
    assert!(set.pixels[8 * 2 + 4] < 40 && set.pixels[8 * 13 + 4] > 215);
}

/// A TIFF with float or signed samples (which the `image` crate does not read) is read by
/// scaling its own range of finite values to 0-255, gray or RGB (alpha dropped); a colour type
/// it cannot map is still a clear error.
#[test]
fn float_and_signed_tiffs_are_read_on_their_own_range() {
    use tiff::encoder::{colortype, TiffEncoder};
    type Encoder<'a> = TiffEncoder<&'a mut std::io::Cursor<Vec<u8>>>;
    let encode = |f: &dyn Fn(&mut Encoder)| {
        let mut c = std::io::Cursor::new(Vec::new());
        f(&mut TiffEncoder::new(&mut c).unwrap());
        c.into_inner()
    };
    // 4 x 1 float gray: -1, 1, 3 and NaN -> 0, 128, 255 and 0
    let f32_gray = encode(&|e| e.write_image::<colortype::Gray32Float>(4, 1, &[-1.0f32, 1.0, 3.0, f32::NAN]).unwrap());
    let g = graft::data::images::decode_upright(&f32_gray).unwrap().to_luma8();
    assert_eq!(g.as_raw(), &vec![0u8, 128, 255, 0]);
    // signed 16-bit gray, and float RGB with the range over every colour sample
    let i16_gray = encode(&|e| e.write_image::<colortype::GrayI16>(3, 1, &[-255i16, 0, 255]).unwrap());
    assert_eq!(graft::data::images::decode_upright(&i16_gray).unwrap().to_luma8().as_raw(), &vec![0u8, 128, 255]);
    let f64_rgb = encode(&|e| e.write_image::<colortype::RGB64Float>(2, 1, &[0.0f64, 10.0, 20.0, 5.0, 40.0, 20.0]).unwrap());
    let rgb = graft::data::images::decode_upright(&f64_rgb).unwrap().to_rgb8();
    assert_eq!(rgb.as_raw().len(), 6);
    assert_eq!((rgb.as_raw()[0], rgb.as_raw()[4]), (0, 255));
    let i32_gray = encode(&|e| e.write_image::<colortype::GrayI32>(3, 1, &[-70_000i32, 0, 70_000]).unwrap());
    let g = graft::data::images::decode_upright(&i32_gray).unwrap().to_luma8();
    assert_eq!(g.as_raw(), &vec![0u8, 128, 255]);
    // a constant image is black, not a division by zero
    let flat = encode(&|e| e.write_image::<colortype::Gray64Float>(2, 2, &[7.0f64; 4]).unwrap());
    assert_eq!(graft::data::images::decode_upright(&flat).unwrap().to_luma8().as_raw(), &vec![0u8; 4]);
    // through the loader, at the backbone's input
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("sample.tif");
    std::fs::write(&p, &f32_gray).unwrap();
    let item = graft::data::Item { source: graft::data::ItemSource::File(p), label: Some(0) };
    let set = decode_items(&[item], InputSpec { channels: 1, height: 1, width: 4 }, false).unwrap();
    assert_eq!(set.pixels, vec![0, 128, 255, 0]);
    // CMYK floats: refused, naming the colour type
    let cmyk = encode(&|e| e.write_image::<colortype::CMYK32Float>(1, 1, &[0.1f32, 0.2, 0.3, 0.4]).unwrap());
    match graft::data::images::decode_upright(&cmyk) {
        Err(e) => assert!(e.contains("CMYK"), "{e}"),
        Ok(img) => assert_eq!(img.to_rgb8().as_raw().len(), 3, "read by the image crate itself"),
    }
}
