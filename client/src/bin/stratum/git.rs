//! Talking to Git: running it, and writing loose objects it accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flate2::write::ZlibEncoder;
use flate2::Compression;
use sha1::Digest;
use stratum_client::ObjectKind;

use crate::CliError;

/// A repository's object format, which names its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    pub fn parse(name: &str) -> Result<Self, CliError> {
        match name.trim() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            other => Err(CliError::Local(format!(
                "unknown git object format {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// The Git object name of `kind` + `content` in this format (hex).
    pub fn object_name(self, kind: ObjectKind, content: &[u8]) -> String {
        let header = format!("{} {}\0", kind.git_name(), content.len());
        match self {
            Self::Sha1 => {
                let mut hasher = sha1::Sha1::new();
                hasher.update(header.as_bytes());
                hasher.update(content);
                hex::encode(hasher.finalize())
            }
            Self::Sha256 => {
                let mut hasher = sha2::Sha256::new();
                hasher.update(header.as_bytes());
                hasher.update(content);
                hex::encode(hasher.finalize())
            }
        }
    }
}

/// Runs `git -C repo args...` and returns its output; a failure to start it
/// or a non-zero exit is an error that says what git said.
pub fn git(repo: &Path, args: &[&str]) -> Result<Output, CliError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|err| CliError::Local(format!("cannot run git: {err}")))?;
    if !output.status.success() {
        return Err(CliError::Local(format!(
            "git {} in {} failed: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output)
}

/// Starts `git cat-file --batch-all-objects --batch` (plus `extra`) in
/// `repo`: every object, header line and content, on its stdout (taken).
pub fn cat_all_objects(
    repo: &Path,
    extra: &[&str],
) -> Result<(std::process::Child, std::process::ChildStdout), CliError> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| CliError::Local(format!("cannot run git: {err}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::Local("git's stdout is missing".into()))?;
    Ok((child, stdout))
}

/// The object format of the repository at `repo`.
pub fn object_format(repo: &Path) -> Result<ObjectFormat, CliError> {
    let output = git(repo, &["rev-parse", "--show-object-format"])?;
    ObjectFormat::parse(&String::from_utf8_lossy(&output.stdout))
}

/// The repository's object directory.
pub fn objects_dir(repo: &Path) -> Result<PathBuf, CliError> {
    let output = git(
        repo,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "objects",
        ],
    )?;
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Writes a loose object (zlib of "kind len\0content") under `objects`,
/// atomically (temp file, then rename); an existing one is left alone.
/// Returns whether it was written.
pub fn write_loose(
    objects: &Path,
    name: &str,
    kind: ObjectKind,
    content: &[u8],
) -> Result<bool, CliError> {
    let dir = objects.join(&name[..2]);
    let path = dir.join(&name[2..]);
    if path.exists() {
        return Ok(false);
    }
    let local = |err: std::io::Error| CliError::Local(format!("{}: {err}", path.display()));
    std::fs::create_dir_all(&dir).map_err(local)?;
    let temp = dir.join(format!("tmp_obj_{}_{}", std::process::id(), &name[2..]));
    let mut encoder = ZlibEncoder::new(
        Vec::with_capacity(content.len() / 2 + 64),
        Compression::fast(),
    );
    encoder
        .write_all(format!("{} {}\0", kind.git_name(), content.len()).as_bytes())
        .and_then(|()| encoder.write_all(content))
        .map_err(local)?;
    let compressed = encoder.finish().map_err(local)?;
    std::fs::write(&temp, compressed).map_err(local)?;
    std::fs::rename(&temp, &path).map_err(local)?;
    Ok(true)
}
