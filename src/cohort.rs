//! The cohort as this pool sees it: how rows are keyed and which columns its schema allows,
//! the CSV read into valid rows and rejects, the groups the rows name checked against the pool,
//! and the groups whose members need reading. Must not write to Cognito or decide per row.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::calls::Calls;
use crate::cognito::{Delivery, Directory, PoolInfo, UsernameMode};
use crate::error::Error;
use crate::input::{self, ColumnRules, KeyMode, Record, Reject, Row};
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
    r.reason = match &reject.column {
        Some(c) => format!("line {}, column {c}: {}", reject.line, reject.reason),
        None => format!("line {}: {}", reject.line, reject.reason),
    };
    r
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
    for record in reader.records(key_mode, rules)? {
        match record? {
            Record::Valid(row) => {
                if delivery == Delivery::Sms
                    && !row.attributes.iter().any(|(n, _)| n == "phone_number")
                {
                    rejects.push(Reject {
                        line: row.line,
                        column: Some("phone_number".into()),
                        key: Some(row.key.clone()),
                        email: Some(row.email.clone()),
                        reason: "--delivery sms needs a phone number".into(),
                    });
                } else {
                    rows.push(row);
                }
            }
            Record::Invalid(reject) => rejects.push(reject),
        }
    }
    Ok((rows, rejects))
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

pub fn group_uses(rows: &[Row]) -> BTreeMap<String, GroupUse> {
    let mut uses = BTreeMap::new();
    for row in rows {
        note_groups(&mut uses, row);
    }
    uses
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

/// The groups the file manages: every group its `groups` column names anywhere. `--update
/// groups` takes users out of these only; a group the file never names is never touched.
pub fn managed_groups(rows: &[Row]) -> BTreeSet<String> {
    rows.iter().flat_map(|r| r.groups.iter().cloned()).collect()
}

/// The groups whose members must be read: those some row names and the state does not record
/// as done for that row; with `--update groups`, every managed group (membership decides both
/// what to add and what to remove).
pub fn memberships_to_read(
    rows: &[Row],
    known: &HashMap<String, Known>,
    update_groups: bool,
) -> Option<BTreeSet<String>> {
    let groups: BTreeSet<String> = if update_groups {
        managed_groups(rows)
    } else {
        rows.iter()
            .flat_map(|r| {
                let done = known
                    .get(&r.key)
                    .map(|k| k.groups_done.as_slice())
                    .unwrap_or(&[]);
                r.groups.iter().filter(move |g| !done.contains(g)).cloned()
            })
            .collect()
    };
    (!groups.is_empty()).then_some(groups)
}
