//! Cell checks: what one cell of a row may hold (text, email, username, phone number, groups,
//! formulas), how header names are normalised, and how values and columns are named in reasons.
//! Pure string work; must not read input or know about encodings.

use std::hash::{DefaultHasher, Hasher};

/// Cognito's limit on any attribute value, in characters.
pub(super) const MAX_VALUE_CHARS: usize = 2048;
pub(super) const MAX_EMAIL_CHARS: usize = 254;
pub(super) const MAX_LOCAL_PART_CHARS: usize = 64;
pub(super) const MAX_DOMAIN_LABEL_CHARS: usize = 63;
pub(super) const MAX_USERNAME_CHARS: usize = crate::cognito::limits::USERNAME_MAX;
pub(super) const MAX_GROUP_CHARS: usize = 128;
/// Quoted values in reasons are cut here so a reason stays one readable line.
pub(super) const QUOTE_CHARS: usize = 60;
/// A best-effort key or email longer than this is garbage (often a quote left open) and is
/// left out of the reject rather than copied into every report.
pub(super) const BEST_EFFORT_CHARS: usize = 256;
/// Column lists in run-level errors are cut here.
pub(super) const LIST_MAX: usize = 40;

/// A failed check: the column index (None for the whole row) and the reason.
pub(super) struct Fault {
    pub(super) column: Option<usize>,
    pub(super) reason: String,
}

impl Fault {
    pub(super) fn at(column: usize, reason: String) -> Self {
        Fault {
            column: Some(column),
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Email,
    Username,
    Groups,
    Phone,
    Attribute,
}

pub(super) struct Column {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) limit: usize,
    pub(super) required: bool,
}

pub(super) fn role_of(name: &str) -> Role {
    match name {
        "email" => Role::Email,
        "username" => Role::Username,
        "groups" => Role::Groups,
        "phone_number" => Role::Phone,
        _ => Role::Attribute,
    }
}

/// Why a column can never come from the file, if it can't.
pub(super) fn reserved(name: &str) -> Option<&'static str> {
    match name {
        "sub" => Some("it is assigned by Cognito and not writable"),
        "email_verified" | "phone_number_verified" => Some("it is managed by the tool"),
        "identities" => Some("it is managed by Cognito for federated sign-in and not writable"),
        _ if name.starts_with("cognito:") => Some("cognito: attributes are not writable"),
        _ => None,
    }
}

/// A cell, trimmed; a short row's missing trailing cells read as empty.
pub(super) fn cell(record: &csv::StringRecord, index: usize) -> &str {
    record.get(index).unwrap_or("").trim()
}

pub(super) fn best_effort(value: &str) -> Option<String> {
    (!value.is_empty() && value.chars().count() <= BEST_EFFORT_CHARS).then(|| value.to_owned())
}

pub(super) fn key_hash(key: &str) -> u64 {
    // DefaultHasher::new() has fixed keys, so the same file gives the same answer every run.
    let mut hasher = DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.finish()
}

/// Checks every cell gets: decodable, within the length limit, no control characters.
/// `span` is the record's first line and, if the record ran to the end of the input, its last.
pub(super) fn check_text(
    value: &str,
    column: &Column,
    bad_bytes: &str,
    span: (u64, Option<u64>),
    record: &csv::StringRecord,
) -> Result<(), String> {
    let (line, ends_at_eof) = span;
    if value.contains('\u{FFFD}') {
        return Err(bad_bytes.to_owned());
    }
    let chars = value.chars().count();
    if chars > column.limit {
        return Err(format!(
            "value is {chars} characters long; the limit for {} is {}",
            quote(&column.name),
            column.limit
        ));
    }
    if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\t') {
        if c == '\n' || c == '\r' {
            // A quote left open swallows the following lines into one field; say where it ends.
            // Counting the breaks inside the record is right when its quotes close; one left
            // open also swallows the file's final line break, so then the end of input decides.
            let last = ends_at_eof.unwrap_or_else(|| {
                let breaks: usize = record.iter().map(count_line_breaks).sum();
                line.saturating_add(u64::try_from(breaks).unwrap_or(u64::MAX))
            });
            return Err(format!(
                "contains a line break (the row runs from line {line} to {last}; check for a quote left open): {}",
                quote(value)
            ));
        }
        return Err(format!(
            "contains the control character U+{:04X}: {}",
            u32::from(c),
            quote(value)
        ));
    }
    Ok(())
}

pub(super) fn count_line_breaks(text: &str) -> usize {
    text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count()
}

pub(super) fn looks_like_formula(value: &str) -> bool {
    let mut chars = value.chars();
    match chars.next() {
        Some('=' | '@') => true,
        Some('+' | '-') => chars.next().is_some_and(|c| !c.is_ascii_digit()),
        _ => false,
    }
}

pub(super) fn formula_check(value: &str) -> Result<(), String> {
    if looks_like_formula(value) {
        Err(format!(
            "looks like a spreadsheet formula: {}",
            quote(value)
        ))
    } else {
        Ok(())
    }
}

/// Validates a trimmed email cell and returns it lower-cased.
pub(super) fn check_email(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("email is required but empty".to_owned());
    }
    // Before the ASCII test, so that a no-break or ideographic space pasted into an address is
    // called a space, not an internationalised address.
    if value.chars().any(char::is_whitespace) {
        return Err(format!(
            "not a valid email address (contains a space): {}",
            quote(value)
        ));
    }
    // A Japanese IME left in full-width mode types ＠ and ｔａｒｏ: say so rather than
    // "internationalised".
    if let Some(c) = value
        .chars()
        .find(|c| ('\u{FF01}'..='\u{FF5E}').contains(c))
    {
        return Err(format!(
            "not a valid email address (contains the full-width character {c}; type it half-width): {}",
            quote(value)
        ));
    }
    if !value.is_ascii() {
        return Err(format!(
            "internationalised email addresses are not supported: {}",
            quote(value)
        ));
    }
    let email = value.to_ascii_lowercase();
    if let Some(why) = email_problem(&email) {
        return Err(format!(
            "not a valid email address ({why}): {}",
            quote(value)
        ));
    }
    formula_check(value)?;
    Ok(email)
}

/// What is wrong with a lower-cased ASCII address, if anything.
pub(super) fn email_problem(email: &str) -> Option<&'static str> {
    if email.len() > MAX_EMAIL_CHARS {
        return Some("longer than 254 characters");
    }
    if email.chars().any(|c| c.is_ascii_whitespace()) {
        return Some("contains a space");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some("no @");
    };
    if domain.contains('@') {
        return Some("more than one @");
    }
    if local.is_empty() {
        return Some("nothing before the @");
    }
    if local.len() > MAX_LOCAL_PART_CHARS {
        return Some("more than 64 characters before the @");
    }
    // Dot-atom only (RFC 5321): quoted local parts are legal but nobody's Excel sheet means one.
    if !local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
    {
        return Some("a character before the @ is not allowed");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Some("misplaced dot before the @");
    }
    if domain.is_empty() {
        return Some("nothing after the @");
    }
    if !domain.contains('.') {
        return Some("the domain needs a dot");
    }
    let mut labels = domain.split('.').peekable();
    while let Some(label) = labels.next() {
        if label.is_empty() {
            return Some("the domain has an empty part");
        }
        if label.len() > MAX_DOMAIN_LABEL_CHARS {
            return Some("a domain part is longer than 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Some("the domain may only have letters, digits, dots and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a domain part starts or ends with a hyphen");
        }
        if labels.peek().is_none()
            && (label.len() < 2 || !label.chars().all(|c| c.is_ascii_lowercase()))
        {
            return Some("the top-level domain must be at least two letters");
        }
    }
    None
}

pub(super) fn check_username(value: &str, email_usernames: bool) -> Result<(), String> {
    if value.is_empty() {
        return Err("username is required (rows are keyed by username) but empty".to_owned());
    }
    if value.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!(
            "username is longer than {MAX_USERNAME_CHARS} characters: {}",
            quote(value)
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "username must not contain spaces or control characters: {}",
            quote(value)
        ));
    }
    if let Some(why) = crate::cognito::limits::username_problem(value) {
        return Err(format!(
            "Cognito refuses this username ({why}): {}",
            quote(value)
        ));
    }
    if !email_usernames && value.is_ascii() && email_problem(&value.to_ascii_lowercase()).is_none()
    {
        return Err(format!(
            "username must not be an email address (Cognito refuses email-format usernames when email is an alias): {}",
            quote(value)
        ));
    }
    Ok(())
}

/// Checks an email that is sent as the `Username` (a pool where email is the username, or a
/// file without a `username` column): an address may be longer than Cognito takes for one.
pub(super) fn check_email_as_username(email: &str) -> Result<(), String> {
    match crate::cognito::limits::username_problem(email) {
        None => Ok(()),
        Some(why) => Err(format!(
            "the email is the username here, and Cognito refuses it as one ({why}): {}",
            quote(email)
        )),
    }
}

/// Strips the separators people type (including the full-width ones a Japanese IME produces)
/// and checks E.164.
pub(super) fn normalise_phone(value: &str) -> Result<String, String> {
    let mut number = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ' '
            | '\t'
            | '-'
            | '('
            | ')'
            | '.'
            | '\u{3000}'
            | '\u{2010}'..='\u{2015}'
            | '\u{2212}'
            | '\u{FF08}'
            | '\u{FF09}'
            | '\u{FF0D}'
            | '\u{FF0E}' => {}
            '\u{FF0B}' => number.push('+'),
            '\u{FF10}'..='\u{FF19}' => {
                if let Some(digit) = char::from_digit(u32::from(c) - 0xFF10, 10) {
                    number.push(digit);
                }
            }
            _ => number.push(c),
        }
    }
    let e164 = number.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    });
    if e164 {
        Ok(number)
    } else if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        Err(format!(
            "phone_number needs the country code in E.164 form, e.g. +81901234567: {}",
            quote(value)
        ))
    } else {
        Err(format!(
            "not a valid phone_number (expected E.164 form, e.g. +81901234567): {}",
            quote(value)
        ))
    }
}

pub(super) fn parse_groups(value: &str) -> Result<Vec<String>, String> {
    let mut groups: Vec<String> = Vec::new();
    // A Japanese IME often types the full-width semicolon; it is never meant as part of a name.
    for part in value.split([';', '；']) {
        let name = part.trim();
        if name.is_empty() {
            continue;
        }
        if name.chars().count() > MAX_GROUP_CHARS {
            return Err(format!(
                "group name is longer than {MAX_GROUP_CHARS} characters: {}",
                quote(name)
            ));
        }
        // Cognito group names match [\p{L}\p{M}\p{S}\p{N}\p{P}]+: no spaces at all.
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "group name must not contain spaces or control characters: {}",
                quote(name)
            ));
        }
        if !groups.iter().any(|g| g == name) {
            groups.push(name.to_owned());
        }
    }
    Ok(groups)
}

/// Normalises a header cell: trimmed (also of stray BOMs and zero-width spaces left by
/// concatenated exports), lower-cased except the part after `custom:`, which Cognito treats as
/// case-sensitive.
pub(super) fn normalise_column(raw: &str) -> String {
    let name = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}' || c == '\u{200B}');
    match name.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("custom:") => {
            format!("custom:{}", name.get(7..).unwrap_or_default())
        }
        _ => name.to_lowercase(),
    }
}

/// `"value"` with escapes, cut at [`QUOTE_CHARS`] characters so a reason stays short.
pub(super) fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    let mut used = 0;
    for c in value.chars() {
        let escaped: String = match c {
            '\'' => c.to_string(),
            _ => c.escape_debug().collect(),
        };
        let width = escaped.chars().count();
        if used + width > QUOTE_CHARS {
            out.push('…');
            break;
        }
        used += width;
        out.push_str(&escaped);
    }
    out.push('"');
    out
}

pub(super) fn list(names: &[String]) -> String {
    let mut out: Vec<String> = names.iter().take(LIST_MAX).map(|n| quote(n)).collect();
    if names.len() > LIST_MAX {
        out.push(format!("and {} more", names.len() - LIST_MAX));
    }
    if out.is_empty() {
        "(none)".to_owned()
    } else {
        out.join(", ")
    }
}

/// "3 (C)": the position and the spreadsheet column letters, as Excel users look for them.
pub(super) fn col_ref(position: &usize) -> String {
    format!("{position} ({})", letters(*position))
}

/// A column's letters as a spreadsheet names it: 1 is A, 27 is AA.
pub(super) fn letters(position: usize) -> String {
    let mut letters = Vec::new();
    let mut n = position;
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(char::from(b'A' + u8::try_from(rem).unwrap_or(0)));
        n = (n - 1) / 26;
    }
    letters.iter().rev().collect()
}
