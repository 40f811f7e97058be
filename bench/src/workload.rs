//! What the load is made of: object sizes, which keys are read, and the
//! objects themselves.
//!
//! Sizes are fixed or drawn from a log-normal fitted to a real Git
//! repository: `git cat-file --batch-all-objects --batch-check` over this
//! project's own history (729 objects: 364 blobs, 320 trees, 45 commits)
//! gives ln(size) a mean of 6.40 and a standard deviation of 2.28 (median
//! 418 bytes, mean 4.4 KiB, p99 37 KiB). Draws are clamped to
//! [1 B, `GIT_MAX_SIZE`].

use rand::{Rng, RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use stratum_client::{ObjectId, ObjectKind};

/// Parameters of the Git size distribution (see the module comment).
pub const GIT_LN_MEAN: f64 = 6.40;
pub const GIT_LN_SD: f64 = 2.28;
pub const GIT_MAX_SIZE: usize = 4 << 20;

/// How big each object is.
#[derive(Debug, Clone)]
pub enum SizeDist {
    Fixed(usize),
    /// Log-normal as measured on a Git repository.
    Git(LogNormal<f64>),
}

impl SizeDist {
    /// `4096`, `4k`, `1m`, or `git`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("git") {
            let dist = LogNormal::new(GIT_LN_MEAN, GIT_LN_SD).map_err(|err| err.to_string())?;
            return Ok(Self::Git(dist));
        }
        let lower = text.to_ascii_lowercase();
        let (digits, scale) = match lower.strip_suffix('k') {
            Some(digits) => (digits, 1 << 10),
            None => match lower.strip_suffix('m') {
                Some(digits) => (digits, 1 << 20),
                None => (lower.as_str(), 1),
            },
        };
        let value: usize = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size (bytes, 4k, 1m, or git)"))?;
        Ok(Self::Fixed(value * scale))
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        match self {
            Self::Fixed(size) => *size,
            Self::Git(dist) => (dist.sample(rng) as usize).clamp(1, GIT_MAX_SIZE),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Fixed(size) => format!("{size} B"),
            Self::Git(_) => format!("git (log-normal, ln mean {GIT_LN_MEAN}, sd {GIT_LN_SD})"),
        }
    }
}

/// Which of the preloaded keys a read picks.
#[derive(Debug, Clone)]
pub enum Popularity {
    Uniform,
    /// Zipf with exponent `s` over key ranks (rank 1 the hottest).
    Zipf(f64),
}

impl Popularity {
    /// `uniform` or `zipf` (s = 0.99) or `zipf:S`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "uniform" => Ok(Self::Uniform),
            "zipf" => Ok(Self::Zipf(0.99)),
            other => match other.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(s)) if s > 0.0 => Ok(Self::Zipf(s)),
                _ => Err(format!(
                    "{text:?}: expected uniform, zipf or zipf:S with S > 0"
                )),
            },
        }
    }
}

/// Draws key indexes in `0..n`.
pub struct KeyPicker {
    n: usize,
    zipf: Option<Zipf<f64>>,
}

impl KeyPicker {
    pub fn new(n: usize, popularity: &Popularity) -> Result<Self, String> {
        if n == 0 {
            return Err("no keys to pick from".into());
        }
        let zipf = match popularity {
            Popularity::Uniform => None,
            Popularity::Zipf(s) => Some(Zipf::new(n as f64, *s).map_err(|err| err.to_string())?),
        };
        Ok(Self { n, zipf })
    }

    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        match &self.zipf {
            None => rng.random_range(0..self.n),
            // Zipf draws ranks 1..=n.
            Some(zipf) => (zipf.sample(rng) as usize).clamp(1, self.n) - 1,
        }
    }
}

/// What objects are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Random bytes: nothing compresses (the worst case for compression,
    /// and what earlier results were measured with).
    Random,
    /// Lines of generated source code: compresses about as well as a real
    /// repository's files (zstd level 3 to about a third; see the tests).
    Text,
}

impl Content {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "random" => Ok(Self::Random),
            "text" => Ok(Self::Text),
            other => Err(format!("{other:?} is not random or text")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Text => "text",
        }
    }
}

/// Words generated source is made of.
const WORDS: &[&str] = &[
    "fn", "let", "mut", "match", "if", "else", "return", "self", "pub", "struct", "impl", "for",
    "in", "while", "use", "crate", "Some", "None", "Ok", "Err", "Result", "Option", "Vec",
    "String", "u64", "usize", "bytes", "len", "offset", "index", "segment", "record", "shard",
    "object", "payload", "header", "config", "error", "reply", "request", "frame", "buffer",
    "write", "read", "sync", "batch", "commit", "tree", "blob", "id", "kind", "count", "next",
];

/// A deterministic object: the same `seed`, `len` and `content` always give
/// the same bytes, so a reader can check what it got against what was
/// written.
pub fn object(seed: u64, len: usize, content: Content) -> (ObjectId, ObjectKind, Vec<u8>) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let bytes = match content {
        Content::Random => {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            bytes
        }
        Content::Text => source_text(&mut rng, len),
    };
    let kind = ObjectKind::Blob;
    (ObjectId::compute(kind, &bytes), kind, bytes)
}

/// Indented lines of words, punctuation and numbers, `len` bytes.
fn source_text(rng: &mut rand::rngs::SmallRng, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 80);
    while text.len() < len {
        let depth = rng.random_range(0..4usize);
        text.extend(std::iter::repeat_n(b' ', depth * 4));
        for word in 0..rng.random_range(2..9usize) {
            if word > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
            match rng.random_range(0..8u8) {
                0 => text.extend_from_slice(format!("_{}", rng.random_range(0..100u32)).as_bytes()),
                1 => text.extend_from_slice(b"()"),
                2 => text.push(b','),
                _ => {}
            }
        }
        text.extend_from_slice(if rng.random_bool(0.3) {
            b" {\n"
        } else {
            b";\n"
        });
    }
    text.truncate(len);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> rand::rngs::SmallRng {
        rand::rngs::SmallRng::seed_from_u64(42)
    }

    #[test]
    fn sizes_parse_and_fixed_sizes_are_fixed() {
        assert!(matches!(SizeDist::parse("4096"), Ok(SizeDist::Fixed(4096))));
        assert!(matches!(SizeDist::parse("4k"), Ok(SizeDist::Fixed(4096))));
        assert!(matches!(
            SizeDist::parse("1M"),
            Ok(SizeDist::Fixed(1048576))
        ));
        assert!(SizeDist::parse("lots").is_err());
        let fixed = SizeDist::parse("100").unwrap();
        assert!((0..100).all(|_| fixed.sample(&mut rng()) == 100));
    }

    #[test]
    fn git_sizes_follow_the_measured_distribution() {
        let dist = SizeDist::parse("git").unwrap();
        let mut rng = rng();
        let mut sizes: Vec<usize> = (0..50_000).map(|_| dist.sample(&mut rng)).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2] as f64;
        // exp(6.40) = 602: the median of the log-normal.
        assert!((450.0..800.0).contains(&median), "median {median}");
        let mean_ln = sizes.iter().map(|s| (*s as f64).ln()).sum::<f64>() / sizes.len() as f64;
        assert!((mean_ln - GIT_LN_MEAN).abs() < 0.1, "mean ln {mean_ln}");
        assert!(sizes[0] >= 1 && *sizes.last().unwrap() <= GIT_MAX_SIZE);
    }

    #[test]
    fn zipf_is_skewed_and_uniform_is_not() {
        let n = 1000;
        let mut rng = rng();
        let count_hottest = |picker: &KeyPicker, rng: &mut rand::rngs::SmallRng| {
            (0..20_000).filter(|_| picker.pick(rng) == 0).count()
        };
        let zipf = KeyPicker::new(n, &Popularity::parse("zipf").unwrap()).unwrap();
        let uniform = KeyPicker::new(n, &Popularity::Uniform).unwrap();
        // Zipf(0.99) over 1000 keys gives rank 1 about 13% of draws;
        // uniform about 0.1%.
        let hot = count_hottest(&zipf, &mut rng);
        assert!(hot > 1_500, "zipf rank 1 drawn {hot} times of 20000");
        let flat = count_hottest(&uniform, &mut rng);
        assert!(flat < 100, "uniform key 0 drawn {flat} times of 20000");
        assert!((0..10_000).all(|_| zipf.pick(&mut rng) < n));
        assert!(Popularity::parse("zipf:0").is_err());
        assert!(KeyPicker::new(0, &Popularity::Uniform).is_err());
    }

    #[test]
    fn objects_are_deterministic_and_hash_to_their_id() {
        for mode in [Content::Random, Content::Text] {
            let (id, kind, content) = object(7, 300, mode);
            assert_eq!(content.len(), 300);
            assert_eq!(object(7, 300, mode).2, content);
            assert_ne!(object(8, 300, mode).2, content);
            assert!(id.verify(kind, &content));
        }
    }

    #[test]
    fn text_compresses_like_source_code_and_random_does_not() {
        let ratio = |mode| {
            let (_, _, content) = object(3, 16 << 10, mode);
            let compressed = stratum_wire::codec::compress(&content, 3, None).expect("compress");
            compressed.map_or(1.0, |c| c.len() as f64 / content.len() as f64)
        };
        let text = ratio(Content::Text);
        assert!((0.2..0.45).contains(&text), "text compresses to {text}");
        assert_eq!(ratio(Content::Random), 1.0);
    }
}
