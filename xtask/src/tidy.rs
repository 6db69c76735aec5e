//! Repository rules, checked as plain tests (`cargo test -p xtask`), after rust-analyzer's
//! "tidy": layering of the crates, lints on every crate, docs on every crate, CI wiring.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    super::root()
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("crates"))
        .expect("crates/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn crate_name(dir: &Path) -> String {
    dir.file_name()
        .expect("crate dir has a name")
        .to_string_lossy()
        .into_owned()
}

/// Names of the packages in one `[section]` of a manifest (line-based: our manifests keep
/// one dependency per line).
fn section_deps(manifest: &str, section: &str) -> Vec<String> {
    let mut in_section = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        if !in_section || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.split(['=', '.']).next() {
            deps.push(name.trim().to_owned());
        }
    }
    deps
}

fn manifest(dir: &Path) -> String {
    fs::read_to_string(dir.join("Cargo.toml")).expect("readable Cargo.toml")
}

#[test]
fn dependencies_point_toward_core() {
    // What each crate may depend on among our own crates (normal dependencies).
    let allowed: &[(&str, &[&str])] = &[
        ("bgops-core", &[]),
        ("bgops-storage", &["bgops-core"]),
        ("bgops-memory", &["bgops-core", "bgops-storage"]),
        ("bgops-redis", &["bgops-core", "bgops-storage"]),
        ("bgops-postgres", &["bgops-core", "bgops-storage"]),
        ("bgops-nats", &["bgops-core", "bgops-storage"]),
        ("bgops-saga", &["bgops-core", "bgops-storage"]),
        ("bgops-queue", &["bgops-core", "bgops-storage"]),
        ("bgops-idempotency", &["bgops-core", "bgops-storage"]),
        (
            "bgops-axum",
            &["bgops-core", "bgops-storage", "bgops-idempotency"],
        ),
        // Operations: the CLI connects to every backend; the board reads through the
        // storage contract; the metrics recorder implements core's hooks.
        (
            "bgops-cli",
            &[
                "bgops-core",
                "bgops-storage",
                "bgops-redis",
                "bgops-postgres",
                "bgops-nats",
            ],
        ),
        ("bgops-board", &["bgops-core", "bgops-storage"]),
        ("bgops-metrics", &["bgops-core"]),
    ];
    for dir in crate_dirs() {
        let name = crate_name(&dir);
        if name == "bgops" {
            continue; // the facade may know every crate
        }
        let ours: Vec<String> = section_deps(&manifest(&dir), "dependencies")
            .into_iter()
            .filter(|d| d.starts_with("bgops"))
            .collect();
        let rule = allowed
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("tidy: add a layering rule for new crate {name}"));
        for dep in ours {
            assert!(
                rule.1.contains(&dep.as_str()),
                "{name} depends on {dep}: dependencies must point toward bgops-core \
                 (engines take Arc<dyn …Store>; only the facade and examples know every crate)"
            );
        }
    }
}

#[test]
fn core_and_storage_have_no_runtime_driver_or_web_dependency() {
    let banned = [
        "fred",
        "sqlx",
        "async-nats",
        "axum",
        "tower",
        "tower-http",
        "hyper",
        "redis",
    ];
    for name in ["bgops-core", "bgops-storage"] {
        let deps = section_deps(&manifest(&root().join("crates").join(name)), "dependencies");
        for dep in &deps {
            assert!(
                !banned.contains(&dep.as_str()),
                "{name} must not depend on {dep}"
            );
        }
    }
    let core = section_deps(&manifest(&root().join("crates/bgops-core")), "dependencies");
    assert!(
        !core.iter().any(|d| d == "tokio"),
        "bgops-core must not depend on tokio"
    );
}

#[test]
fn drivers_stay_in_their_crates() {
    for dir in crate_dirs() {
        let name = crate_name(&dir);
        let deps = section_deps(&manifest(&dir), "dependencies");
        if name != "bgops-redis" {
            assert!(
                !deps.iter().any(|d| d == "fred"),
                "{name}: only bgops-redis may use fred"
            );
        }
        if name != "bgops-postgres" {
            assert!(
                !deps.iter().any(|d| d == "sqlx"),
                "{name}: only bgops-postgres may use sqlx"
            );
        }
        // The board is an axum Router by design (services `.nest` it).
        if name != "bgops-axum" && name != "bgops-board" {
            assert!(
                !deps.iter().any(|d| d == "axum"),
                "{name}: only bgops-axum and bgops-board may use axum"
            );
        }
    }
}

#[test]
fn every_crate_uses_workspace_lints_and_has_crate_docs() {
    let mut manifests: Vec<PathBuf> = crate_dirs();
    manifests.push(root().join("xtask"));
    manifests.push(root().join("examples"));
    for dir in manifests {
        let text = manifest(&dir);
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{}: add `[lints] workspace = true`",
            dir.display()
        );
    }
    for dir in crate_dirs() {
        let lib = fs::read_to_string(dir.join("src/lib.rs")).expect("every crate has a lib.rs");
        assert!(
            lib.starts_with("//!") || lib.starts_with("#![doc"),
            "{}: lib.rs must start with crate docs",
            dir.display()
        );
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = fs::read_to_string(root().join(".ci/run")).expect(".ci/run exists");
    assert!(
        ci.contains("cargo xtask ci"),
        ".ci/run must call `cargo xtask ci`"
    );
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md exists");
    assert!(
        readme.contains("cargo xtask ci"),
        "README must show the test command"
    );
    assert!(
        readme.contains("cargo run --example"),
        "README must show the main command"
    );
}

/// Engines own protocols; adapters map (house style 14, 15): the idempotency claim
/// protocol (`begin` / `complete` / `release` / `renew` of an `IdempotencyStore`) is driven
/// by `bgops-idempotency` only. The HTTP middleware and the facade call the engine.
#[test]
fn only_the_engine_drives_the_idempotency_protocol() {
    // What calling the store's protocol looks like: its request/answer types, and the
    // four calls on a store or storage handle.
    let forbidden = [
        "BeginRequest",
        "BeginOutcome",
        "store.begin(",
        "storage.begin(",
        "store.complete(",
        "storage.complete(",
        "store.release(",
        "storage.release(",
        "store.renew(",
        "storage.renew(",
        "IdempotencyStore::begin",
        "IdempotencyStore::complete",
        "IdempotencyStore::release",
        "IdempotencyStore::renew",
    ];
    for dir in ["crates/bgops-axum/src", "crates/bgops/src"] {
        for file in walk(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("readable source");
            for pattern in forbidden {
                assert!(
                    !text.contains(pattern),
                    "{}: `{pattern}`: only bgops-idempotency drives the idempotency store's \
                     claim protocol; call the IdempotencyEngine instead",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn lua_scripts_are_all_used() {
    let dir = root().join("crates/bgops-redis/lua");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let mut sources = String::new();
    for file in walk(&root().join("crates/bgops-redis/src")) {
        sources.push_str(&fs::read_to_string(file).expect("readable source"));
    }
    for entry in entries {
        let path = entry.expect("readable dir entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let stem = path
            .file_stem()
            .expect("file stem")
            .to_string_lossy()
            .into_owned();
        // Loaded as `include_str!("../lua/x.lua")` or through a macro naming `"x"`.
        assert!(
            sources.contains(&name) || sources.contains(&format!("\"{stem}\"")),
            "lua/{name} is not loaded by the Redis backend"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}
