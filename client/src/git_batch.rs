//! Reading a Git repository's objects: the output of
//! `git cat-file --batch-all-objects --batch` ("<name> <type> <size>\n",
//! the content, "\n", repeated). Shared by `stratum import-git` and
//! `stratum-bench replay`.

use std::io::{self, BufRead, BufReader, Read};

use stratum_wire::ObjectKind;

/// One object as Git printed it.
#[derive(Debug, Clone)]
pub struct GitObject {
    /// Git's name for it (SHA-1 or SHA-256 hex, per the repository).
    pub name: String,
    pub kind: ObjectKind,
    pub content: Vec<u8>,
}

/// Parses `git cat-file --batch` output from `input`, handing each object
/// to `each` until the input ends or `each` returns `false`.
pub fn read_batch(input: impl Read, mut each: impl FnMut(GitObject) -> bool) -> io::Result<()> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(kind), Some(size)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(format!("unexpected git cat-file line {line:?}")));
        };
        let kind = ObjectKind::from_git_name(kind)
            .map_err(|err| bad(format!("git object {name}: {err}")))?;
        let size: usize = size
            .parse()
            .map_err(|_| bad(format!("git object {name}: bad size {size:?}")))?;
        // Read through `take` so a garbled size cannot allocate more than
        // the input holds.
        let want = size
            .checked_add(1)
            .ok_or_else(|| bad(format!("git object {name}: size {size} is too large")))?;
        let mut content = Vec::new();
        (&mut reader).take(want as u64).read_to_end(&mut content)?;
        if content.len() != want {
            return Err(bad(format!("git object {name}: content ends early")));
        }
        content.truncate(size);
        let object = GitObject {
            name: name.to_owned(),
            kind,
            content,
        };
        if !each(object) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_read_in_order_and_truncation_is_an_error() {
        let input = b"aaaa blob 3\nabc\nbbbb tree 0\n\n";
        let mut seen = Vec::new();
        read_batch(&input[..], |object| {
            seen.push((object.name, object.kind, object.content));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("aaaa".into(), ObjectKind::Blob, b"abc".to_vec()),
                ("bbbb".into(), ObjectKind::Tree, Vec::new()),
            ]
        );
        assert!(read_batch(&b"aaaa blob 30\nabc\n"[..], |_| true).is_err());
        assert!(read_batch(&b"aaaa blob\n"[..], |_| true).is_err());
        assert!(read_batch(&b"aaaa blob 18446744073709551615\nx"[..], |_| true).is_err());
    }
}
