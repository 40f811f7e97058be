//! Parsers for the formats /proc and /sys use. Each is small, total (bad
//! input is `None`, never a panic) and tested on captured samples.

/// "6.18.44-fc-v669" → (6, 18, 44).
pub fn kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u32>().ok());
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// A kernel CPU list ("0-3,8,10-11", or empty) → sorted CPU numbers.
pub fn cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
                if last < first || last - first > 1 << 16 {
                    return None;
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// The selected choice of a sysfs multiple choice ("always [madvise] never",
/// "none [mq-deadline] kyber bfq") and every choice offered.
pub fn bracketed_choice(text: &str) -> Option<(String, Vec<String>)> {
    let mut selected = None;
    let mut all = Vec::new();
    for word in text.split_whitespace() {
        match word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            Some(inner) => {
                selected = Some(inner.to_owned());
                all.push(inner.to_owned());
            }
            None => all.push(word.to_owned()),
        }
    }
    // A scheduler file with a single choice shows no brackets ("none").
    if selected.is_none() && all.len() == 1 {
        selected = all.first().cloned();
    }
    Some((selected?, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(kernel_version("6.1"), Some((6, 1, 0)));
        assert_eq!(kernel_version("linux"), None);
        assert_eq!(kernel_version("6"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(cpu_list("0-3,8,10-11\n"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("a-b"), None);
        assert_eq!(cpu_list("0-99999999"), None);
    }

    #[test]
    fn bracketed_choices() {
        let (selected, all) = bracketed_choice("always [madvise] never").unwrap();
        assert_eq!(selected, "madvise");
        assert_eq!(all, ["always", "madvise", "never"]);
        assert_eq!(bracketed_choice("[none] mq-deadline").unwrap().0, "none");
        assert_eq!(bracketed_choice("none").unwrap().0, "none");
        assert_eq!(bracketed_choice("a b c"), None);
        assert_eq!(bracketed_choice(""), None);
    }
}
