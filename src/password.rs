//! Temporary passwords: generated from the OS CSPRNG to satisfy a pool's policy, checked against
//! it, and held in a type whose `Debug` prints nothing. Exposed only at the SDK builder and the
//! suppress-mode password file. Must not log, store or format a password anywhere else.

use rand::rngs::{StdRng, SysRng};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use secrecy::{ExposeSecret, SecretString};

use serde::Serialize;

/// The pool's password policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordPolicy {
    pub minimum_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
}

impl Default for PasswordPolicy {
    /// Cognito's default policy.
    fn default() -> Self {
        PasswordPolicy {
            minimum_length: 8,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
        }
    }
}

/// Cognito's symbol set, without the space: a space is a valid symbol, but a password may not
/// start or end with one and an out-of-band channel may eat it.
pub const SYMBOLS: &[u8] = b"^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+-";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";

/// Characters a password that a person reads in a message must not hold: Cognito puts it into
/// an HTML email as raw text, so `< > &` (and quotes, a backslash, a backtick) can vanish or
/// garble in mail clients; and `0 O o 1 l I |` look alike in many fonts.
pub const UNREADABLE: &[u8] = b"<>&\"'\\`0Oo1lI|";

/// Which characters a temporary password may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// Everything Cognito accepts: the password goes to a file, never through a message.
    Full,
    /// For a password a person reads in an email or SMS: no [`UNREADABLE`] character, and it
    /// ends with a letter or digit (the default template puts a period right after it).
    Readable,
}

impl Alphabet {
    fn allows(self, c: u8) -> bool {
        match self {
            Alphabet::Full => true,
            Alphabet::Readable => !UNREADABLE.contains(&c),
        }
    }

    fn class(self, class: &[u8]) -> Vec<u8> {
        class.iter().copied().filter(|c| self.allows(*c)).collect()
    }
}

/// Length of generated passwords when the policy asks for less: 16 characters from 94 is about
/// 104 bits.
pub const GENERATED_LENGTH: usize = 16;

/// A temporary password. `Debug` shows `[REDACTED]`; there is no `Display`.
#[derive(Clone)]
pub struct TempPassword(SecretString);

impl std::fmt::Debug for TempPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TempPassword([REDACTED])")
    }
}

impl TempPassword {
    pub fn new(s: String) -> Self {
        TempPassword(SecretString::from(s))
    }

    /// The password itself: only for the SDK request and the password file.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The OS random source failed: the run cannot safely make passwords.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(String);

/// A password satisfying `policy`: every required class present, symbols from Cognito's set,
/// no whitespace, at least `max(policy.minimum_length, 16)` characters, from `alphabet`, and
/// beginning and ending with a letter or digit.
pub fn generate(policy: &PasswordPolicy, alphabet: Alphabet) -> Result<TempPassword, RngError> {
    // rand's StdRng (a ChaCha CSPRNG) keyed from the OS for each password: an OS failure is
    // an error rather than a panic.
    let mut rng = StdRng::try_from_rng(&mut SysRng).map_err(|e| RngError(e.to_string()))?;
    Ok(generate_with(policy, alphabet, &mut rng))
}

fn generate_with<R: rand::Rng>(
    policy: &PasswordPolicy,
    alphabet: Alphabet,
    rng: &mut R,
) -> TempPassword {
    let length = policy.minimum_length.clamp(GENERATED_LENGTH, 99);
    let (upper, lower, digits, symbols) = (
        alphabet.class(UPPER),
        alphabet.class(LOWER),
        alphabet.class(DIGITS),
        alphabet.class(SYMBOLS),
    );
    let mut classes: Vec<&[u8]> = Vec::new();
    if policy.require_uppercase {
        classes.push(&upper);
    }
    if policy.require_lowercase {
        classes.push(&lower);
    }
    if policy.require_numbers {
        classes.push(&digits);
    }
    if policy.require_symbols {
        classes.push(&symbols);
    }
    let all: Vec<u8> = [&upper[..], &lower, &digits, &symbols].concat();
    let mut chars: Vec<u8> = classes
        .iter()
        .filter_map(|class| class.choose(rng).copied())
        .collect();
    while chars.len() < length {
        if let Some(c) = all.choose(rng) {
            chars.push(*c);
        }
    }
    chars.shuffle(rng);
    // A leading or trailing symbol is allowed, but some mail clients and terminals trim
    // punctuation when people copy a password; keep the ends alphanumeric.
    for end in [0, chars.len() - 1] {
        if !chars[end].is_ascii_alphanumeric() {
            if let Some(i) = (1..chars.len() - 1).find(|&i| chars[i].is_ascii_alphanumeric()) {
                chars.swap(end, i);
            } else {
                chars[end] = lower[rng.random_range(0..lower.len())];
            }
        }
    }
    TempPassword::new(chars.into_iter().map(char::from).collect())
}

/// Why a password does not satisfy a policy, if it does not. Never includes the password.
pub fn violations(policy: &PasswordPolicy, password: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if password.chars().count() < policy.minimum_length {
        out.push("shorter than the minimum length");
    }
    if password.chars().count() > 256 {
        out.push("longer than 256 characters");
    }
    if policy.require_uppercase && !password.chars().any(|c| c.is_ascii_uppercase()) {
        out.push("no upper-case letter");
    }
    if policy.require_lowercase && !password.chars().any(|c| c.is_ascii_lowercase()) {
        out.push("no lower-case letter");
    }
    if policy.require_numbers && !password.chars().any(|c| c.is_ascii_digit()) {
        out.push("no digit");
    }
    if policy.require_symbols && !password.bytes().any(|b| SYMBOLS.contains(&b) || b == b' ') {
        out.push("no symbol from Cognito's set");
    }
    if password.starts_with(char::is_whitespace) || password.ends_with(char::is_whitespace) {
        out.push("begins or ends with whitespace");
    }
    if password
        .chars()
        .any(|c| !(c.is_ascii_graphic() || c == ' '))
    {
        out.push("has a character outside Basic Latin");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policies() -> Vec<PasswordPolicy> {
        let mut out = Vec::new();
        for bits in 0..16u8 {
            for min in [6, 8, 20, 99] {
                out.push(PasswordPolicy {
                    minimum_length: min,
                    require_uppercase: bits & 1 != 0,
                    require_lowercase: bits & 2 != 0,
                    require_numbers: bits & 4 != 0,
                    require_symbols: bits & 8 != 0,
                });
            }
        }
        out
    }

    #[test]
    fn generated_passwords_satisfy_every_policy() {
        let mut rng = StdRng::seed_from_u64(7);
        for policy in policies() {
            for _ in 0..200 {
                let p = generate_with(&policy, Alphabet::Full, &mut rng);
                assert_eq!(
                    violations(&policy, p.expose()),
                    Vec::<&str>::new(),
                    "{policy:?}"
                );
                assert!(p.expose().len() >= policy.minimum_length.max(GENERATED_LENGTH));
                assert!(!p.expose().contains(' '));
                let first = p.expose().as_bytes()[0];
                let last = *p.expose().as_bytes().last().unwrap();
                assert!(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
            }
        }
    }

    /// A password a person reads in a message: every policy still met, no character that HTML
    /// or a font garbles, and a letter or digit at the end, where the template's period follows.
    #[test]
    fn readable_passwords_satisfy_every_policy_and_survive_the_message() {
        let mut rng = StdRng::seed_from_u64(11);
        for policy in policies() {
            for _ in 0..500 {
                let p = generate_with(&policy, Alphabet::Readable, &mut rng);
                let text = p.expose();
                assert_eq!(violations(&policy, text), Vec::<&str>::new(), "{policy:?}");
                assert!(
                    !text.bytes().any(|b| UNREADABLE.contains(&b)),
                    "{policy:?}: an unreadable character"
                );
                let last = *text.as_bytes().last().unwrap();
                assert!(last.is_ascii_alphanumeric(), "{policy:?}");
                if policy.require_symbols {
                    assert!(text.bytes().any(|b| SYMBOLS.contains(&b)));
                }
            }
        }
    }

    #[test]
    fn the_full_alphabet_does_use_the_characters_readable_passwords_avoid() {
        let mut rng = StdRng::seed_from_u64(5);
        let policy = PasswordPolicy::default();
        let full: String = (0..300)
            .map(|_| {
                generate_with(&policy, Alphabet::Full, &mut rng)
                    .expose()
                    .to_string()
            })
            .collect();
        assert!(full.bytes().any(|b| UNREADABLE.contains(&b)));
    }

    #[test]
    fn the_os_generator_works_and_does_not_repeat() {
        let policy = PasswordPolicy::default();
        let a = generate(&policy, Alphabet::Readable).unwrap();
        let b = generate(&policy, Alphabet::Readable).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(violations(&policy, a.expose()).is_empty());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let p = TempPassword::new("Sup3r$ecret!".into());
        let shown = format!("{p:?}");
        assert!(!shown.contains("Sup3r"), "{shown}");
    }

    #[test]
    fn violations_name_what_is_missing() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            violations(&policy, "abc"),
            vec![
                "shorter than the minimum length",
                "no upper-case letter",
                "no digit",
                "no symbol from Cognito's set"
            ]
        );
        assert_eq!(
            violations(&policy, " Abcdef1!"),
            vec!["begins or ends with whitespace"]
        );
        assert!(
            violations(&policy, "Abcdef1 x").is_empty(),
            "a space is a symbol"
        );
        assert_eq!(
            violations(&policy, "Abcdéf1!"),
            vec!["has a character outside Basic Latin"]
        );
    }

    #[test]
    fn all_classes_are_spread_over_many_draws() {
        let mut rng = StdRng::seed_from_u64(1);
        let policy = PasswordPolicy::default();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            seen.extend(
                generate_with(&policy, Alphabet::Readable, &mut rng)
                    .expose()
                    .bytes(),
            );
        }
        let readable = UPPER.iter().chain(LOWER).chain(DIGITS).chain(SYMBOLS);
        for c in readable.filter(|c| !UNREADABLE.contains(c)) {
            assert!(seen.contains(c), "never drew {:?}", *c as char);
        }
    }
}
