//! The status report's vocabulary: where a provider stands, a provider's row, the funnel, the
//! summary and their tally, the rows kept on disk while the report is made, and how statuses
//! were read. Imported by `standing` (which decides the standing) and by the writers; must
//! import none of them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::HandOver;

/// How `status` reads the users' statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refresh {
    /// One AdminGetUser per provider (UserRead).
    PerUser,
    /// ListUsers over the whole pool (UserList, 60 a page).
    Scan,
    /// ListUsers filtered to `FORCE_CHANGE_PASSWORD`, then AdminGetUser for each provider not
    /// in that list (the ones whose status changed, and those not pending before).
    PendingScan,
}

/// Where a provider stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Confirmed, and not in any earlier status report: send the API credentials.
    NewlyConfirmed,
    Confirmed,
    /// Invited; the temporary password is still valid.
    Pending,
    /// Invited; the temporary password has expired or is lost (`run` re-issues it, unless
    /// `--reissue never`).
    Expired,
    /// Disabled, deleted from the pool, past `--max-reissues`, another email, or a status the
    /// tool does not manage.
    Attention,
    /// Disabled by this tool: it left its list (`run --absent disable`), or its cohort was
    /// revoked. Not a problem to fix; `enable` brings it back.
    Offboarded,
    /// In the CSV but not in the pool, and never invited (`run` will create it).
    NotInvited,
    /// Its status could not be read.
    Unknown,
}

impl Standing {
    /// Every variant, in declaration order (derived: a new one cannot be left out).
    pub const ALL: &'static [Standing] = <Standing as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::NewlyConfirmed => "newly_confirmed",
            Standing::Confirmed => "confirmed",
            Standing::Pending => "pending",
            Standing::Expired => "expired",
            Standing::Attention => "attention",
            Standing::Offboarded => "offboarded",
            Standing::NotInvited => "not_invited",
            Standing::Unknown => "unknown",
        }
    }
}

/// One provider in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    pub key: String,
    pub username: Option<String>,
    pub email: Option<String>,
    /// The name Cognito holds (`name`, else `family_name given_name`).
    pub name: Option<String>,
    /// Cognito's status now (`DELETED` when the user is gone).
    pub status: Option<String>,
    pub standing: Standing,
    pub reason: String,
    pub first_invited_at: Option<DateTime<Utc>>,
    pub last_invited_at: Option<DateTime<Utc>>,
    pub reissues: u32,
    pub temp_password_expires_at: Option<DateTime<Utc>>,
    /// When the tool first saw the user CONFIRMED.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Why the provider cannot move on without a person, where the help desk will be asked
    /// (a suppressed address, re-issued to the limit); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<super::model::Stuck>,
}

impl StatusRow {
    /// A pending invitation that expires within a day of `now`: the help desk's next calls.
    pub fn expires_soon(&self, now: DateTime<Utc>) -> bool {
        self.standing == Standing::Pending
            && self
                .temp_password_expires_at
                .is_some_and(|at| at > now && at - now <= chrono::Duration::days(1))
    }
}

/// The onboarding funnel over the providers the tool invited and has not offboarded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub invited: u64,
    pub confirmed: u64,
    pub pending: u64,
    pub expired: u64,
    pub attention: u64,
    /// Median hours from the first invitation to when the tool first saw the user confirmed
    /// (an upper bound: it sees confirmations only when it looks).
    pub median_hours_to_confirm: Option<f64>,
}

/// The funnel of these rows.
pub fn funnel(rows: &[StatusRow]) -> Funnel {
    Tally::of(rows).funnel()
}

/// What the report counts of its rows, taken one at a time as they are classified: the
/// summary, the funnel, the hours each took to confirm (for the median), and what the page and
/// the log say of them. Holds no row.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub rows: u64,
    pub summary: BTreeMap<Standing, u64>,
    invited: u64,
    confirmed: u64,
    pending: u64,
    expired: u64,
    attention: u64,
    /// Hours from the first invitation to the first sight of the confirmation, one a confirmed
    /// provider (the median needs them all): 8 bytes each, a million in 8 MB.
    hours: Vec<f64>,
    /// The widest key, in characters (the terminal's table lines up on it).
    pub key_width: usize,
    /// Pending invitations that expire within a day of the tally's `now`.
    pub expires_soon: u64,
    /// The earliest expiry among the expired.
    pub oldest_expiry: Option<DateTime<Utc>>,
}

impl Tally {
    /// A tally with every standing at zero.
    pub fn new() -> Tally {
        Tally {
            summary: Standing::ALL.iter().map(|s| (*s, 0)).collect(),
            ..Tally::default()
        }
    }

    /// The tally of these rows (`now`: the epoch; what expires soon is not counted).
    pub fn of(rows: &[StatusRow]) -> Tally {
        let mut t = Tally::new();
        for r in rows {
            t.add(r, DateTime::<Utc>::MIN_UTC);
        }
        t
    }

    pub fn add(&mut self, r: &StatusRow, now: DateTime<Utc>) {
        self.rows += 1;
        *self.summary.entry(r.standing).or_default() += 1;
        self.key_width = self.key_width.max(r.key.chars().count());
        if r.expires_soon(now) {
            self.expires_soon += 1;
        }
        if r.standing == Standing::Expired {
            self.oldest_expiry = match (self.oldest_expiry, r.temp_password_expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // The offboarded left their list: they are no longer part of its onboarding.
        if r.first_invited_at.is_none() || r.standing == Standing::Offboarded {
            return;
        }
        self.invited += 1;
        match r.standing {
            Standing::Confirmed | Standing::NewlyConfirmed => self.confirmed += 1,
            Standing::Pending => self.pending += 1,
            Standing::Expired => self.expired += 1,
            Standing::Attention => self.attention += 1,
            _ => {}
        }
        if let (Some(i), Some(c)) = (r.first_invited_at, r.confirmed_at)
            && c >= i
        {
            self.hours.push((c - i).num_seconds() as f64 / 3600.0);
        }
    }

    /// The funnel over the providers the tool invited and has not offboarded.
    pub fn funnel(&self) -> Funnel {
        let mut hours = self.hours.clone();
        hours.sort_by(|a, b| a.total_cmp(b));
        let median = match hours.len() {
            0 => None,
            n if n % 2 == 1 => Some(hours[n / 2]),
            n => Some((hours[n / 2 - 1] + hours[n / 2]) / 2.0),
        };
        Funnel {
            invited: self.invited,
            confirmed: self.confirmed,
            pending: self.pending,
            expired: self.expired,
            attention: self.attention,
            median_hours_to_confirm: median.map(|h| (h * 10.0).round() / 10.0),
        }
    }
}

/// A file of rows, one JSON object a line, removed when the last handle to it goes.
#[derive(Debug)]
struct SpillFile(PathBuf);

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The report's rows, kept on disk as they were classified (a million of them are never held)
/// and read back one at a time wherever the report is written; `only`: just the rows of this
/// standing (the newly confirmed).
#[derive(Debug, Clone, Default)]
pub struct RowsOnDisk {
    file: Option<Arc<SpillFile>>,
    only: Option<Standing>,
    count: u64,
}

impl RowsOnDisk {
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The same file's rows of one standing, `count` of them.
    pub fn only(&self, standing: Standing, count: u64) -> RowsOnDisk {
        RowsOnDisk {
            file: self.file.clone(),
            only: Some(standing),
            count,
        }
    }

    /// Each row, in the order written.
    pub fn each(&self, mut f: impl FnMut(StatusRow) -> std::io::Result<()>) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        for line in BufReader::new(std::fs::File::open(&file.0)?).lines() {
            let row: StatusRow = serde_json::from_str(&line?)?;
            if self.only.is_none_or(|s| s == row.standing) {
                f(row)?;
            }
        }
        Ok(())
    }
}

impl Serialize for RowsOnDisk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.count as usize))?;
        let mut failed = None;
        let read = self.each(|row| {
            seq.serialize_element(&row).map_err(|e| {
                failed = Some(e);
                std::io::Error::other("serializing a row failed")
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(S::Error::custom)?;
        seq.end()
    }
}

/// Writes rows to a [`RowsOnDisk`] as they come.
pub struct RowsWriter {
    file: Arc<SpillFile>,
    out: BufWriter<std::fs::File>,
    count: u64,
}

impl RowsWriter {
    /// A new, empty file at `path` (replacing one a killed run left).
    pub fn create(path: &Path) -> std::io::Result<RowsWriter> {
        let out = BufWriter::with_capacity(64 * 1024, std::fs::File::create(path)?);
        Ok(RowsWriter {
            file: Arc::new(SpillFile(path.to_path_buf())),
            out,
            count: 0,
        })
    }

    /// Where the rows go.
    pub fn path(&self) -> &Path {
        &self.file.0
    }

    pub fn push(&mut self, row: &StatusRow) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, row)?;
        self.out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// The rows written, to read back.
    pub fn finish(mut self) -> std::io::Result<RowsOnDisk> {
        self.out.flush()?;
        Ok(RowsOnDisk {
            file: Some(self.file),
            only: None,
            count: self.count,
        })
    }
}

/// The `status` report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub run_id: String,
    pub command: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub user_pool_id: String,
    pub previous_status_at: Option<DateTime<Utc>>,
    pub refresh: Refresh,
    /// After a pending-only listing: how the providers it did not find were read (one
    /// `AdminGetUser` each, or a full listing, whichever cost less for their number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest: Option<Refresh>,
    /// Estimated quota-seconds of each strategy, and what the chosen one spent.
    pub estimated_quota_seconds: BTreeMap<&'static str, f64>,
    pub quota_seconds: f64,
    pub calls: BTreeMap<String, u64>,
    pub summary: BTreeMap<Standing, u64>,
    pub funnel: Funnel,
    pub newly_confirmed: RowsOnDisk,
    pub rows: RowsOnDisk,
    /// What `--on-confirmed` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_over: Vec<HandOver>,
    /// What `--on-expiring` did, provider by provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reminded: Vec<HandOver>,
    /// How long the cohort has not moved ([`crate::monitor::stall`]).
    pub stalled: Option<super::model::Stall>,
    /// Pending invitations that expire within a day (the log says how many).
    #[serde(skip)]
    pub expires_soon: u64,
    /// The providers whose address is on the SES account's suppression list (their keys): no
    /// invitation reaches them, and `run` re-issues none. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
    /// The providers re-issued `--max-reissues` times without signing in (their keys): `run`
    /// invites them no more. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reissue_limit: Vec<String>,
}

impl StatusReport {
    /// How the refresh ended: stopped, some provider unread, or all read.
    pub fn ending(&self, interrupted: bool) -> crate::error::Ending {
        use crate::error::Ending;
        if interrupted {
            Ending::Interrupted
        } else if self.summary.get(&Standing::Unknown).copied().unwrap_or(0) > 0 {
            Ending::RowsFailed
        } else {
            Ending::Settled
        }
    }
}

/// Counts per standing, every standing present (zero when none).
pub fn summarize(rows: &[StatusRow]) -> BTreeMap<Standing, u64> {
    Tally::of(rows).summary
}
