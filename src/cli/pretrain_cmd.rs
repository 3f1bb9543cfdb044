//! `graft pretrain --method M` for the unsupervised and self-supervised methods.
use super::commands::{load_opts, print_json, Method, PretrainArgs};
use crate::backbones::{card, Model, ModelCard};
use crate::data::{decode_items, load_dataset};
use crate::error::{GraftError, Result, EXIT_OK};
use crate::executor;
use crate::pretrain::{self, PretrainSpec};
use crate::util::{now_rfc3339, sha256_file, write_atomic};
use clap::ValueEnum;

/// The images an unsupervised method learns from, without labels. A labelled tree (class
/// folders, split folders or IDX files) gives its training split and its unlabelled pool, so a
/// later `graft run` with the same seed never tests on an image pretraining saw. Anything else,
/// e.g. a plain folder of photos at any depth, gives every image under it.
fn unlabelled_images(a: &PretrainArgs) -> Result<(Option<crate::data::Dataset>, Vec<crate::data::Item>)> {
    // an ImageFolder root holds class folders only; images directly in it mean a plain folder
    let loose = std::fs::read_dir(&a.data.data)
        .map(|rd| rd.flatten().any(|e| e.path().is_file() && crate::data::folder::is_image(&e.path())))
        .unwrap_or(false);
    let labelled =
        if loose { Err(GraftError::Data("images directly in the folder".into())) } else { load_dataset(&load_opts(&a.data, a.seed)) };
    match labelled {
        Ok(ds) => {
            let items =
                ds.train.iter().chain(ds.unlabelled.iter()).map(|i| crate::data::Item { source: i.source.clone(), label: None }).collect();
            Ok((Some(ds), items))
        }
        // not a labelled tree (no split folders, no class folders): a plain folder of images
        Err(GraftError::Data(why)) if !a.data.data.join("train").is_dir() && a.data.test.is_none() => {
            let mut items = crate::data::folder::scan_unlabelled(&a.data.data)?;
            if let Some(u) = &a.data.unlabelled {
                items.extend(crate::data::folder::scan_unlabelled(u)?);
            }
            if items.is_empty() {
                return Err(GraftError::Data(format!(
                    "{} holds no images at any depth ({}); pass a folder of images",
                    a.data.data.display(),
                    crate::data::folder::IMAGE_EXTENSIONS.join(", ")
                )));
            }
            tracing::info!("{}: not a labelled tree ({why}); pretraining on all {} images under it", a.data.data.display(), items.len());
            Ok((None, items))
        }
        Err(e) => Err(e),
    }
}

pub fn unsupervised(a: PretrainArgs) -> Result<i32> {
    if a.resume || a.checkpoint_dir.is_some() {
        return Err(GraftError::Usage("--resume and --checkpoint-dir apply to --method supervised only".into()));
    }
    let name = a.method.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    let method = pretrain::Method::parse(&name)?;
    debug_assert!(a.method != Method::Supervised);
    let mut spec = PretrainSpec::new(method);
    if let Some(js) = &a.settings {
        let mut v = serde_json::to_value(&spec).expect("serialises");
        let extra: serde_json::Value =
            serde_json::from_str(js).map_err(|e| GraftError::Usage(format!("--settings: not a JSON object: {e}")))?;
        let obj = extra.as_object().ok_or_else(|| GraftError::Usage("--settings: must be a JSON object".into()))?;
        for (k, x) in obj {
            v[k] = x.clone();
        }
        spec = serde_json::from_value(v).map_err(|e| GraftError::Usage(format!("--settings: {e}")))?;
    }
    spec.epochs = a.epochs;
    spec.batch_size = a.batch_size;
    if let Some(lr) = a.lr {
        spec.lr = lr;
    }
    spec.validate().map_err(|(f, m)| GraftError::Usage(format!("{f}: {m}")))?;
    let t_all = std::time::Instant::now();
    let (device, _) = executor::select_device(&a.device)?;
    let (ds, mut items) = unlabelled_images(&a)?;
    if let Some(m) = a.max_train {
        use rand::seq::SliceRandom;
        items.shuffle(&mut crate::util::rng_for(a.seed, "max-train"));
        items.truncate(m);
    }
    let (model, input, init_note) = match &a.init {
        Some(b) => {
            let mut m = card::resolve(b)?;
            if let Some(s) = a.input_size {
                card::override_input_size(&mut m, s)?;
            }
            if m.card.arch != a.arch.name() {
                return Err(GraftError::Usage(format!("--init {b}: its arch is {}, not --arch {}", m.card.arch, a.arch.name())));
            }
            let model = Model::for_card(&m, m.card.n_classes, a.seed, &device)?;
            model.load_weights(&m.weights, &[])?;
            (model, m.card.input, format!("initialised from {} (sha256 {})", m.card.name, &m.card.sha256[..12.min(m.card.sha256.len())]))
        }
        None => {
            let mut input = a.arch.default_input();
            if let Some(s) = a.input_size {
                input.height = s;
                input.width = s;
            }
            let k = ds.as_ref().map(|d| d.n_classes()).unwrap_or(2).max(2);
            (Model::new(a.arch, input, k, a.seed, &device)?, input, "random initialisation".to_string())
        }
    };
    let set = decode_items(&items, input, a.data.skip_bad)?;
    let norm = set.channel_stats();
    let out = pretrain::pretrain(&model, &set, &norm, &spec, a.seed, &|l| errln!("{l}"))?;
    model.save(&a.out)?;
    let sha = sha256_file(&a.out)?;
    let card = ModelCard {
        card_version: card::CARD_VERSION,
        name: a.name.clone().unwrap_or_else(|| a.out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()),
        arch: a.arch.name().into(),
        input,
        normalisation: norm,
        groups: model.group_names.clone(),
        n_classes: model.n_classes,
        source_classes: Vec::new(),
        source: a
            .source
            .clone()
            .unwrap_or_else(|| a.data.data.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "unknown".into())),
        source_accuracy: None,
        params: model.param_count(),
        license: a.license.clone(),
        sha256: sha,
        method: method.as_str().into(),
        epochs: spec.epochs,
        seed: a.seed,
        final_loss: out.losses.last().copied(),
        command: super::command_line(),
        created_at: now_rfc3339(),
        graft_version: env!("CARGO_PKG_VERSION").into(),
        train_seconds: Some(out.seconds),
        notes: format!(
            "{} on {} unlabelled images ({}); head not trained; settings {}; loss per epoch {:?}; {:.0} images/s; total wall time {:.0}s",
            method.as_str(),
            set.n,
            init_note,
            serde_json::to_string(&spec).expect("serialises"),
            out.losses.iter().map(|l| (l * 1e5).round() / 1e5).collect::<Vec<_>>(),
            out.images_per_second,
            t_all.elapsed().as_secs_f64()
        ),
    };
    let cp = ModelCard::card_path(&a.out);
    write_atomic(&cp, serde_json::to_string_pretty(&card).expect("serialises").as_bytes())?;
    if a.json {
        print_json(&serde_json::json!({"card": card, "losses": out.losses, "images_per_second": out.images_per_second}));
    } else {
        errln!(
            "wrote {} and {}: {} loss {:.5} -> {:.5}",
            a.out.display(),
            cp.display(),
            method.as_str(),
            out.losses[0],
            out.losses[out.losses.len() - 1]
        );
    }
    Ok(EXIT_OK)
}
