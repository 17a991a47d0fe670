//! Secrets that must not protect a real deployment: anyone can compute the
//! pseudonyms (or read the store) of a relay that uses a published value.

/// `[hash] secret` values published by the 2014 axrelay (its `sample.conf`,
/// and an older sample) and the `encrypt` key of that sample. Each is refused
/// in either role.
pub const PUBLISHED_SECRETS: &[&str] = &[
    "2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4=",
    "B1GS3kR1T",
    "zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ=",
];

/// Component passwords from published samples; `run` only warns about
/// these, since the component port normally listens on loopback only.
pub const PUBLISHED_PASSWORDS: &[&str] = &["secret", "component-secret", "CHANGE-ME"];

/// Shortest `[hash] secret` that `run` accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// What is wrong with a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// It was published with the 2014 axrelay.
    Published,
    /// It is shorter than [`MIN_SECRET_BYTES`].
    Short(usize),
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weakness::Published => f.write_str(
                "this value was published with the 2014 axrelay sample configuration; \
                 anyone can use it. Make a new one with `axrelay secret`",
            ),
            Weakness::Short(n) => write!(
                f,
                "{n} bytes is too short (at least {MIN_SECRET_BYTES}); make one with `axrelay secret`"
            ),
        }
    }
}

/// Whether `value` was published.
pub fn is_published(value: &str) -> bool {
    PUBLISHED_SECRETS.contains(&value)
}

/// The weakness of a `[hash] secret`, if any.
pub fn hash_secret_weakness(value: &str) -> Option<Weakness> {
    if is_published(value) {
        Some(Weakness::Published)
    } else if value.len() < MIN_SECRET_BYTES {
        Some(Weakness::Short(value.len()))
    } else {
        None
    }
}

/// The weakness of an `encrypt` key (already checked to be 32 bytes).
pub fn encrypt_weakness(value: &str) -> Option<Weakness> {
    is_published(value).then_some(Weakness::Published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weaknesses() {
        assert_eq!(
            hash_secret_weakness("2Wr0rSpTmncJe2UW/t6etJx0NqVBHS1wyFZI0zAdxS4="),
            Some(Weakness::Published)
        );
        assert_eq!(hash_secret_weakness("B1GS3kR1T"), Some(Weakness::Published));
        assert_eq!(
            hash_secret_weakness("0123456789"),
            Some(Weakness::Short(10))
        );
        assert_eq!(hash_secret_weakness("0123456789abcdef"), None);
        assert_eq!(
            encrypt_weakness("zTLiKAKs6uGmq74enXRVOY4b2Va3XBeeG5r0tOBTObQ="),
            Some(Weakness::Published)
        );
    }
}
