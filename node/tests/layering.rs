//! The node's layers import only downwards:
//!
//! store < net < shard < replication < server
//!
//! Each layer is a folder of `node/src/`; this test reads every source file
//! of a layer and fails on any path into a layer it may not use. Run it on
//! its own with `cargo test -p stratum-node --test layering`.

use std::path::{Path, PathBuf};

/// Each layer, and the modules of the crate it may use besides itself.
const LAYERS: &[(&str, &[&str])] = &[
    ("store", &["clock", "offload"]),
    ("net", &["clock"]),
    ("shard", &["store", "clock", "logging"]),
    (
        "replication",
        &[
            "store", "net", "shard", "clock", "offload", "config", "logging",
        ],
    ),
    (
        "server",
        &[
            "store",
            "net",
            "shard",
            "replication",
            "clock",
            "offload",
            "config",
            "logging",
            "io_properties",
            "liveness",
        ],
    ),
];

/// Every crate module, so a path naming one is recognized.
const MODULES: &[&str] = &[
    "store",
    "net",
    "shard",
    "replication",
    "server",
    "cli",
    "allocator",
    "clock",
    "offload",
    "config",
    "logging",
    "io_properties",
    "liveness",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules `source` names through `crate::`, with line numbers.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if MODULES.contains(&name.as_str()) {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, allowed) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "layer {layer} has no files");
        for file in files {
            let source = std::fs::read_to_string(&file).expect("read source");
            for (line, module) in crate_paths(&source) {
                if module != *layer && !allowed.contains(&module.as_str()) {
                    violations.push(format!(
                        "{}:{line}: {layer} uses crate::{module}",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    let found = crate_paths("use crate::server::core::Core; // crate::cli\nlet x = 1;");
    assert_eq!(found, vec![(1, "server".to_owned())]);
}
