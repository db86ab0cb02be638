//! `model check` diagnostics, snapshot style: each file in tests/broken is a model with problems;
//! its `.expected` file holds the diagnostics. `UPDATE_EXPECT=1 cargo test -p causeway-model`
//! rewrites the expectations (review the diff).

use std::path::{Path, PathBuf};

use causeway_model::{Severity, load};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(path: &Path) -> String {
    let loaded = load(path);
    let base = crate_dir();
    loaded
        .diagnostics
        .iter()
        .map(|d| {
            let shown = d.to_string();
            shown.replace(&format!("{}/", base.display()), "")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn broken_models_snapshot() {
    let dir = crate_dir().join("tests/broken");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.file_stem().unwrap().to_string_lossy().ends_with(".part"))
        .collect();
    models.sort();
    assert!(models.len() >= 15, "at least 15 broken models, found {}", models.len());
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for model in &models {
        let got = render(model);
        let expected_path = model.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", model.display()));
        }
        assert!(
            load(model).diagnostics.iter().any(|d| d.severity == Severity::Error) || got.contains("warning"),
            "{} must produce a diagnostic",
            model.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_model_is_clean() {
    let path = crate_dir().join("../../examples/order-fulfillment/model.yaml");
    let loaded = load(&path);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>());
    let model = loaded.model;
    assert_eq!(model.name, "order-fulfillment");
    assert_eq!(model.files.len(), 2, "include: read");
    assert!(model.events.contains_key("CustomerNotified"));
    assert_eq!(model.events["PaymentProcessed"].versions.len(), 2);
    assert_eq!(model.context_of_service("notification-service"), Some("notification"));
    assert!(model.envelope.correlation_required);
}
