//! The cohort as this pool sees it: how rows are keyed and which columns its schema allows,
//! the CSV read into valid rows and rejects, the groups the rows name checked against the pool,
//! and the groups whose members need reading. Must not write to Cognito or decide per row.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::calls::Calls;
use crate::cognito::{Delivery, Directory, PoolInfo, UserStatus, UsernameMode};
use crate::error::Error;
use crate::input::{self, ColumnRules, KeyMode, Record, Reject, Row};
use crate::lookup::Names;
use crate::plan::Refresh;
use crate::report::{Outcome, RowReport};
use crate::state::Known;

/// An open input, header read.
pub type Reader = input::CohortReader<Box<dyn std::io::Read + Send>>;

/// How rows are keyed in this pool, and the column rules from its schema.
pub fn rules_for(pool: &PoolInfo, columns: &[String]) -> Result<(KeyMode, ColumnRules), Error> {
    let has_username = columns.iter().any(|c| c == "username");
    let key_mode = match pool.username_mode {
        UsernameMode::Email => {
            if has_username {
                tracing::warn!(
                    "the pool uses email as the username; the username column is ignored"
                );
            }
            KeyMode::Email
        }
        UsernameMode::FreeForm if has_username => KeyMode::Username,
        UsernameMode::FreeForm => KeyMode::Email,
        UsernameMode::FreeFormEmailAlias => KeyMode::Username,
        UsernameMode::PhoneOnly => {
            return Err(Error::Config(format!(
                "pool {} uses phone numbers as usernames, which this tool does not support",
                pool.id
            )));
        }
    };
    let rules = ColumnRules {
        writable: Some(pool.writable_attributes()),
        required: pool
            .schema
            .iter()
            .filter(|(n, a)| a.required && n.as_str() != "email")
            .map(|(n, _)| n.clone())
            .collect(),
        max_len: pool
            .schema
            .iter()
            .filter_map(|(n, a)| a.max_length.map(|m| (n.clone(), m)))
            .collect(),
        email_usernames: pool.username_mode == UsernameMode::FreeForm,
        fold_username_case: !pool.case_sensitive,
    };
    Ok((key_mode, rules))
}

/// The report row of a row that failed validation.
pub fn invalid_row(reject: &Reject) -> RowReport {
    let mut r = RowReport::new(
        reject.line,
        reject.key.clone().unwrap_or_default(),
        reject.email.clone(),
        Outcome::Invalid,
    );
    r.name = reject.name.clone();
    r.reason = match &reject.column {
        Some(c) => format!("line {}, column {c}: {}", reject.line, reject.reason),
        None => format!("line {}: {}", reject.line, reject.reason),
    };
    r
}

/// The CSV's rows, one at a time, valid or rejected, in file order (`--delivery sms` also
/// rejects a row without a phone number). An error reading the file ends the stream.
pub fn stream(
    reader: Reader,
    key_mode: KeyMode,
    rules: &ColumnRules,
    delivery: Delivery,
) -> Result<impl Iterator<Item = Result<Result<Row, Reject>, Error>>, Error> {
    Ok(reader.records(key_mode, rules)?.map(move |record| {
        Ok(match record? {
            Record::Valid(row)
                if delivery == Delivery::Sms
                    && !row.attributes.iter().any(|(n, _)| n == "phone_number") =>
            {
                Err(Reject {
                    line: row.line,
                    column: Some("phone_number".into()),
                    key: Some(row.key.clone()),
                    email: Some(row.email.clone()),
                    name: row.display_name(),
                    reason: "--delivery sms needs a phone number".into(),
                })
            }
            Record::Valid(row) => Ok(row),
            Record::Invalid(reject) => Err(reject),
        })
    }))
}

/// Reads the whole CSV into valid rows and rejects.
pub fn read_cohort(
    reader: Reader,
    key_mode: KeyMode,
    rules: &ColumnRules,
    delivery: Delivery,
) -> Result<(Vec<Row>, Vec<Reject>), Error> {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for record in stream(reader, key_mode, rules, delivery)? {
        match record? {
            Ok(row) => rows.push(row),
            Err(reject) => rejects.push(reject),
        }
    }
    Ok((rows, rejects))
}

/// What a first pass over the file tells before any Cognito write, holding no row: the groups
/// it names (checked against the pool before anything is written) and those it manages, the
/// counts, and what the lookup of the rows to read needs.
#[derive(Debug, Default)]
pub struct Survey {
    pub groups: BTreeMap<String, GroupUse>,
    /// The groups the file manages: every group its `groups` column names anywhere. `--update
    /// groups` takes users out of these only; a group the file never names is never touched.
    pub managed: BTreeSet<String>,
    pub valid: u64,
    pub invalid: u64,
    /// Confirmed, unchanged and read recently: not read this run.
    pub not_reread: u64,
    pub to_read: u64,
    /// Rows to read whose provider was last seen pending.
    pub pending: u64,
    /// Every name a row to read may be found by: the name it would be created with, its
    /// email, the username the state remembers for it.
    pub names: Names,
    /// The groups whose members must be read: those a row to read names and the state does
    /// not record as done for it; with `--update groups`, every managed group.
    pub memberships: BTreeSet<String>,
    /// With `--absent disable`: the cohort's members the file does not list (what is left of
    /// the members the survey was given once each row's key is taken out; lower-cased when the
    /// pool ignores case, as the members must then be given).
    pub absent: Option<std::collections::HashSet<String>>,
    /// Invalid rows whose key could not be read: any of them could be a member, so who is
    /// absent is not known while there are some.
    pub keyless: u64,
}

/// What the run's incremental reading needs to know for each row (and the row's history,
/// given with it).
pub struct Rereading {
    pub label: String,
    pub refresh: Refresh,
    pub refresh_after: chrono::Duration,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Rereading {
    /// The report of a row not read this run, or `None` when it is read; `known`: what the
    /// state knows of the row's provider.
    pub fn not_reread(&self, row: &Row, known: Option<&Known>) -> Option<RowReport> {
        crate::onboard::not_reread(
            row,
            known,
            &self.label,
            self.refresh,
            self.refresh_after,
            self.now,
        )
    }
}

/// The file's rows, each with what the state knows of its provider (read a slice of rows at
/// a time: see [`crate::state::KnownOf::along`]).
pub fn with_known(
    known: &mut crate::state::KnownOf<'_>,
    rows: impl Iterator<Item = Result<Result<Row, Reject>, Error>>,
) -> impl Iterator<Item = Result<(Result<Row, Reject>, Option<Known>), Error>> {
    let key = |r: &Result<Result<Row, Reject>, Error>| match r {
        Ok(Ok(row)) => Some(row.key.clone()),
        _ => None,
    };
    known.along(rows, key).map(|paired| match paired {
        Ok((Ok(row), known)) => Ok((row, known)),
        Ok((Err(e), _)) | Err(e) => Err(e),
    })
}

/// The first pass over the file: see [`Survey`].
pub fn survey(
    rows: impl Iterator<Item = Result<(Result<Row, Reject>, Option<Known>), Error>>,
    mode: UsernameMode,
    rereading: &Rereading,
    update_groups: bool,
    members: Option<std::collections::HashSet<String>>,
    fold_case: bool,
) -> Result<Survey, Error> {
    // A pool that ignores case finds `Alice` by `alice`: the list still has that provider.
    let fold = |key: &str| {
        if fold_case {
            key.to_lowercase()
        } else {
            key.to_string()
        }
    };
    let mut s = Survey {
        absent: members,
        ..Survey::default()
    };
    for row in rows {
        let (row, known) = row?;
        let known = known.as_ref();
        let row = match row {
            Ok(row) => row,
            Err(reject) => {
                s.invalid += 1;
                match (&reject.key, &mut s.absent) {
                    (Some(key), Some(absent)) => {
                        absent.remove(&fold(key));
                    }
                    (None, _) => s.keyless += 1,
                    _ => {}
                }
                continue;
            }
        };
        s.valid += 1;
        if let Some(absent) = &mut s.absent {
            absent.remove(&fold(&row.key));
        }
        note_groups(&mut s.groups, &row);
        s.managed.extend(row.groups.iter().cloned());
        if rereading.not_reread(&row, known).is_some() {
            s.not_reread += 1;
            continue;
        }
        s.to_read += 1;
        if known.and_then(|k| k.last_status.as_ref()) == Some(&UserStatus::ForceChangePassword) {
            s.pending += 1;
        }
        s.names.insert(&crate::plan::username_for(mode, &row));
        s.names.insert(&row.email);
        if let Some(name) = known.and_then(|k| k.username.as_deref()) {
            s.names.insert(name);
        }
        let done = known.map(|k| k.groups_done.as_slice()).unwrap_or(&[]);
        s.memberships.extend(
            row.groups
                .iter()
                .filter(|g| update_groups || !done.contains(g))
                .cloned(),
        );
    }
    if update_groups {
        s.memberships.extend(s.managed.iter().cloned());
    }
    Ok(s)
}

/// Where the cohort names a group: the first few lines, and how many rows in all.
#[derive(Debug, Default)]
pub struct GroupUse {
    lines: Vec<u64>,
    rows: usize,
}

/// Records the groups of one row (constant memory per group, for `check` on huge files).
pub fn note_groups(uses: &mut BTreeMap<String, GroupUse>, row: &Row) {
    for g in &row.groups {
        let u = uses.entry(g.clone()).or_default();
        u.rows += 1;
        if u.lines.len() < 5 {
            u.lines.push(row.line);
        }
    }
}

/// Checks that every group the cohort names exists in the pool; the error names each missing
/// group with the lines that use it.
pub async fn check_groups<D: Directory>(
    calls: &Calls<D>,
    wanted: &BTreeMap<String, GroupUse>,
) -> Result<(), Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let existing: HashSet<String> = calls.groups().await?.into_iter().collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(g, _)| !existing.contains(g.as_str()))
        .map(|(g, uses)| {
            let shown: Vec<String> = uses.lines.iter().map(u64::to_string).collect();
            let more = if uses.rows > uses.lines.len() {
                format!(" and {} more", uses.rows - uses.lines.len())
            } else {
                String::new()
            };
            let s = if uses.rows == 1 { "" } else { "s" };
            format!("{g} (line{s} {}{more}, column groups)", shown.join(", "))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut have: Vec<&str> = existing.iter().map(String::as_str).collect();
    have.sort();
    Err(Error::Config(format!(
        "groups not in pool {}: {}; the pool has: {}",
        calls.pool_id(),
        missing.join(", "),
        if have.is_empty() {
            "no groups".to_string()
        } else {
            have.join(", ")
        }
    )))
}
