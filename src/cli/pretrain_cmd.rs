//! `graft pretrain --method M` for the unsupervised and self-supervised methods.
use super::commands::{load_opts, print_json, Method, PretrainArgs};
use crate::backbones::{card, Model, ModelCard};
use crate::data::{decode_items, load_dataset};
use crate::error::{GraftError, Result, EXIT_OK};
use crate::executor;
use crate::pretrain::{self, PretrainSpec};
use crate::util::{now_rfc3339, sha256_file, write_atomic};
use clap::ValueEnum;

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
    let ds = load_dataset(&load_opts(&a.data, a.seed))?;
    // every image without its label: the training split and the unlabelled pool
    let mut items: Vec<crate::data::Item> =
        ds.train.iter().chain(ds.unlabelled.iter()).map(|i| crate::data::Item { source: i.source.clone(), label: None }).collect();
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
            (Model::new(a.arch, input, ds.n_classes().max(2), a.seed, &device)?, input, "random initialisation".to_string())
        }
    };
    let set = decode_items(&items, input, a.data.skip_bad)?;
    let norm = set.channel_stats();
    let out = pretrain::pretrain(&model, &set, &norm, &spec, a.seed, &|l| eprintln!("{l}"))?;
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
            .unwrap_or_else(|| ds.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "unknown".into())),
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
        eprintln!(
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
