//! `stratum import-git` then `export-git` through a real node: `git fsck`
//! passes on the export and the object sets are identical.

use std::path::Path;
use std::process::Command;

use stratum_testkit::TestNode;

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A repository with history: nested trees, an edited file, a binary
/// blob, an executable, a symlink and an annotated tag.
fn make_repo(dir: &Path, format: &str) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", &format!("--object-format={format}")]);
    for round in 0..5u8 {
        std::fs::create_dir_all(dir.join("src/deep")).unwrap();
        std::fs::write(
            dir.join("README"),
            format!("round {round}\n").repeat(round as usize + 1),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("src/deep/file{round}.txt")),
            vec![b'x'; 1000 * round as usize],
        )
        .unwrap();
        std::fs::write(
            dir.join("src/blob.bin"),
            (0..=255u8)
                .cycle()
                .take(70_000 + round as usize)
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("commit {round}")]);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("README", dir.join("link")).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "modes"]);
    }
    git(dir, &["tag", "-a", "v1", "-m", "release"]);
}

fn object_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = git(
        dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    names.sort();
    names
}

fn stratum(node: &TestNode, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_stratum"))
        .arg("--node")
        .arg(node.addr(0).to_string())
        .args(args)
        .output()
        .expect("stratum runs");
    assert!(
        output.status.success(),
        "stratum {args:?} exited {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn roundtrip(format: &str, whole_store: bool) {
    let node = TestNode::start(2, &[]);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let export = work.path().join("export");
    make_repo(&repo, format);
    let record = work.path().join("ids.txt");
    let summary = stratum(
        &node,
        &[
            "import-git",
            repo.to_str().unwrap(),
            "--record",
            record.to_str().unwrap(),
        ],
    );
    let names = object_names(&repo);
    assert!(
        summary.contains(&format!(
            "imported {} of {} objects",
            names.len(),
            names.len()
        )),
        "{summary}"
    );

    let mut args = vec![
        "export-git",
        export.to_str().unwrap(),
        "--object-format",
        format,
    ];
    if !whole_store {
        args.extend(["--ids", record.to_str().unwrap()]);
    }
    stratum(&node, &args);
    git(&export, &["fsck", "--full", "--strict"]);
    assert_eq!(object_names(&export), names);
}

#[test]
fn a_sha256_repository_survives_import_and_export() {
    roundtrip("sha256", true);
}

#[test]
fn a_sha1_repository_survives_import_and_export_of_its_recorded_ids() {
    roundtrip("sha1", false);
}

#[test]
fn a_second_import_stores_nothing_new() {
    let node = TestNode::start(1, &[]);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    make_repo(&repo, "sha1");
    stratum(&node, &["import-git", repo.to_str().unwrap()]);
    let again = stratum(&node, &["import-git", repo.to_str().unwrap()]);
    assert!(again.contains(" 0 stored,"), "{again}");
}
