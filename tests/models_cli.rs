//! `graft models --json` lists the shipped zoo with the SPEC's card fields, and every shipped
//! card matches its weights file.
mod common;
use common::{graft, json_of};

#[test]
fn shipped_zoo_is_listed_with_cards() {
    let j = json_of(&graft().current_dir(env!("CARGO_MANIFEST_DIR")).args(["models", "--json"]).output().unwrap());
    let models = j["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for want in [
        "resnet8-cifar10",
        "resnet20-cifar10",
        "convnet4-mnist",
        "convnet4-fashion",
        "convnet4-animal",
        "efficientnet-lite0-imagenet",
        "efficientnet-lite1-imagenet",
        "efficientnet-lite2-imagenet",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let mut sources: Vec<&str> = models.iter().map(|m| m["source"].as_str().unwrap()).collect();
    sources.sort();
    sources.dedup();
    assert!(sources.len() >= 4, "{sources:?}");
    assert!(sources.contains(&"imagenet-1k"));
    for m in models {
        for k in ["name", "arch", "input", "groups", "source", "source_accuracy", "params", "license", "sha256"] {
            assert!(m.get(k).is_some(), "{} lacks {k}", m["name"]);
        }
        assert!(m["input"]["channels"].as_u64().unwrap() >= 1);
        assert_eq!(m["groups"].as_array().unwrap().last().unwrap(), "head");
        assert!(m["params"].as_u64().unwrap() > 10_000);
        if m["source"] != "imagenet-1k" {
            let acc = m["source_accuracy"].as_f64().unwrap();
            assert!(acc > 0.5 && acc <= 1.0, "{} {acc}", m["name"]);
        }
        // the card's sha256 matches the file (resolve refuses otherwise)
        graft::backbones::card::resolve(&format!("{}/models/{}.safetensors", env!("CARGO_MANIFEST_DIR"), m["name"].as_str().unwrap()))
            .unwrap();
    }
}
