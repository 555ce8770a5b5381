//! Cognito's limits on what a request may carry, as AWS's API model (the `cognito-idp` service
//! model botocore and the SDKs are generated from) states them, and the checks that keep a value
//! over them from ever being sent. Pure; must not call Cognito. A test holds each constant
//! against the installed model (`tests/it/limits.rs`), so they cannot drift from it.

use std::sync::LazyLock;

/// `UsernameType`: at most this many characters (code points).
pub const USERNAME_MAX: usize = 128;
/// `UsernameType`'s pattern, matched against the whole value: letters, marks, symbols, numbers
/// and punctuation; no space, control or format character.
pub const USERNAME_PATTERN: &str = r"[\p{L}\p{M}\p{S}\p{N}\p{P}]+";
/// `ListUsers.Filter` (`UserFilterType`): at most this many characters.
pub const FILTER_MAX: usize = 256;

/// The characters `USERNAME_PATTERN`'s class admits, as sorted ranges: the pattern is one class
/// repeated, so a username matches when every character is in it. Read from the pattern itself
/// (regex-syntax's Unicode tables), and kept as ranges: a per-character test needs no automaton.
static USERNAME_CHARS: LazyLock<Vec<(char, char)>> = LazyLock::new(|| {
    use regex_syntax::hir::{Class, HirKind};
    let class = USERNAME_PATTERN
        .strip_suffix('+')
        .expect("the model's pattern is a class, repeated");
    let hir = regex_syntax::parse(class).expect("the model's pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            c.ranges().iter().map(|r| (r.start(), r.end())).collect()
        }
        _ => panic!("the model's username pattern is one Unicode class"),
    }
});

fn username_char(c: char) -> bool {
    USERNAME_CHARS
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Why Cognito would refuse `value` as a `Username`, if it would.
pub fn username_problem(value: &str) -> Option<String> {
    let chars = value.chars().count();
    if chars == 0 {
        return Some("it is empty".into());
    }
    if chars > USERNAME_MAX {
        return Some(format!(
            "it is {chars} characters long; Cognito's limit for a username is {USERNAME_MAX}"
        ));
    }
    let bad = value.chars().find(|c| !username_char(*c))?;
    let what = if bad.is_whitespace() {
        "a space".to_string()
    } else {
        format!("the character U+{:04X}", u32::from(bad))
    };
    Some(format!(
        "it contains {what}; a username is letters, marks, symbols, numbers and punctuation only"
    ))
}

/// A `ListUsers` filter for users whose `attribute` equals `value` exactly, or `None` where
/// Cognito would refuse it as longer than [`FILTER_MAX`].
pub fn equals_filter(attribute: &str, value: &str) -> Option<String> {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    let filter = format!("{attribute} = \"{escaped}\"");
    (filter.chars().count() <= FILTER_MAX).then_some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_held_to_the_models_length_in_characters_and_its_pattern() {
        assert_eq!(username_problem("taro"), None);
        assert_eq!(username_problem("山田太郎"), None);
        assert_eq!(username_problem("a.b-c_d+e@example.jp"), None);
        assert_eq!(
            username_problem(&"山".repeat(128)),
            None,
            "128 characters, 384 bytes"
        );
        assert!(
            username_problem(&"山".repeat(129))
                .unwrap()
                .contains("129 characters")
        );
        assert!(username_problem("山田 太郎").unwrap().contains("a space"));
        assert!(username_problem("a\u{3000}b").unwrap().contains("a space"));
        assert!(username_problem("a\u{200B}b").unwrap().contains("U+200B"));
        assert!(username_problem("a\tb").is_some());
        assert!(username_problem("").is_some());
    }

    #[test]
    fn a_filter_is_quoted_escaped_and_never_longer_than_cognito_takes() {
        assert_eq!(
            equals_filter("email", "a@x.jp").as_deref(),
            Some("email = \"a@x.jp\"")
        );
        assert_eq!(
            equals_filter("email", "a\"b").as_deref(),
            Some("email = \"a\\\"b\"")
        );
        let fits = "a".repeat(FILTER_MAX - "email = \"\"".len());
        assert_eq!(equals_filter("email", &fits).map(|f| f.len()), Some(256));
        assert_eq!(equals_filter("email", &format!("{fits}a")), None);
    }
}
