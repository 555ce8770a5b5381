//! The command line: clap derive only. Doc comments here are the `--help` text; validation and
//! merging with the config file and defaults happen in `config`. Must not validate or decide:
//! the domain's own choices (`Reissue`, `Delivery`, `Lookup`) are defined where they are used
//! and only named here.

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cognito::Delivery;
pub use crate::logging::LogFormat;
use crate::lookup::Lookup;
pub use crate::offboard::Absent;
use crate::plan::{Refresh, Reissue, UpdatePart};
use serde::Deserialize;

/// `--version`: the crate's version and the commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COGNITO_ONBOARD_COMMIT"),
    ")"
);

/// Onboard a cohort of data providers into an Amazon Cognito user pool, and keep onboarding them
/// until every one has set a real password.
///
/// Exit codes: 0 every row settled; 1 the run could not start or was aborted; 2 usage error;
/// 3 some rows were invalid or failed; 4 another run holds the state lock.
#[derive(Debug, Parser)]
#[command(name = "cognito-onboard", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The Cognito user pool, e.g. eu-west-1_AbCdEf123.
    #[arg(long, env = "COGNITO_USER_POOL_ID", global = true)]
    pub user_pool_id: Option<String>,
    /// AWS Region (default: from the pool id, then the AWS configuration).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Named profile from the AWS configuration files.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Send Cognito's and the DynamoDB state's requests here instead of AWS (an emulator);
    /// without it, AWS_ENDPOINT_URL, and AWS_ENDPOINT_URL_DYNAMODB for the state alone.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// How log lines on stderr look.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// More detail in the logs (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Fewer log lines (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Settings file (TOML) with the same settings as the options; options win over it.
    #[arg(long, env = "COGNITO_ONBOARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where the state that remembers invitations and statuses across runs lives: an SQLite
    /// file (default cognito-onboard.db), or dynamodb://TABLE, shared by every machine.
    #[arg(long, env = "COGNITO_ONBOARD_STATE", global = true)]
    pub state: Option<PathBuf>,
    /// The Region of a dynamodb:// state (default: the pool's, then the AWS configuration's).
    #[arg(long, global = true)]
    pub state_region: Option<String>,
    /// How long a dynamodb:// state's run lock lasts unless renewed, e.g. 60s (the default):
    /// a killed run's lock is taken over after it.
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub state_lease: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pre-flight: read the pool's settings and validate the CSV. Writes nothing.
    Check(CheckArgs),
    /// Onboard: create, re-issue or skip each row, and write the report.
    Run(RunArgs),
    /// Refresh where every onboarded provider stands and report who is newly confirmed.
    Status(StatusArgs),
    /// Help desk: why can't these providers sign in, and what fixes it. Read only, unless
    /// --fix.
    Doctor(DoctorArgs),
    /// Help desk: send a new invitation now to providers who have not signed in yet (whatever
    /// the expiry or --max-reissues).
    Reissue(ReissueArgs),
    /// Offboarding: enable providers again (disabled by this tool or anyone), with the same sub
    /// and password.
    Enable(EnableArgs),
    /// Offboarding: take back the users a run created (or a file lists) who never signed in:
    /// disabled, or with --delete --confirm-delete deleted.
    Revoke(RevokeArgs),
    /// Help desk: a confirmed provider lost the password. Cognito sends a code to the verified
    /// email or phone (or, with --temporary, a new temporary password goes to the password file).
    Reset(ResetArgs),
    /// The state itself: create a DynamoDB state table, or move a state between an SQLite file
    /// and a table.
    #[command(subcommand)]
    State(StateCommand),
    /// Print a shell completion script, e.g. `cognito-onboard completions bash >
    /// /etc/bash_completion.d/cognito-onboard`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `cognito-onboard man > /usr/local/share/man/man1/cognito-onboard.1`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the --state dynamodb://TABLE table (on-demand capacity, TTL for old run records).
    Init,
    /// Copy the --state (a table) into a new SQLite file.
    Export(StateFileArgs),
    /// Copy an SQLite state file into the --state (a table), which must hold no state yet.
    Import(StateFileArgs),
}

#[derive(Debug, Args)]
pub struct StateFileArgs {
    /// The SQLite state file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Providers, by email or username.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// A new temporary password instead of a code (AdminSetUserPassword, Permanent=false): needs
    /// --delivery suppress and --password-file.
    #[arg(long)]
    pub temporary: bool,
    #[command(flatten)]
    pub send: SendArgs,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
}

/// How the help desk's writes reach the providers, as `run` takes them.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// How invitations reach people [default: email]. `suppress` sends nothing and needs
    /// --password-file.
    #[arg(long, value_enum)]
    pub delivery: Option<Delivery>,
    /// With --delivery suppress: a new file (mode 0600, never overwritten) that receives
    /// username,temporary_password for out-of-band delivery.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Messages to send per rolling 24 hours, counting every earlier run, as `run` counts them
    /// [default: 50 with Cognito's own email sender, unlimited otherwise].
    #[arg(long)]
    pub email_budget: Option<u32>,
    /// SMS messages per rolling 24 hours, counting every earlier run [default: unlimited].
    #[arg(long)]
    pub sms_budget: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReissueArgs {
    /// Providers, by email or username.
    #[arg(required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub send: SendArgs,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    /// Providers, by email or username.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The run whose created users are taken back (its id, as in its report's name).
    #[arg(long, value_name = "RUN_ID", required_unless_present = "input")]
    pub run: Option<String>,
    /// Or the users this CSV or workbook lists.
    #[arg(long, conflicts_with = "run")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub input_args: InputArgs,
    /// Report who would be taken back, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete them instead of disabling them. A deleted user cannot be restored, and one
    /// created again gets a new sub; needs --confirm-delete.
    #[arg(long, requires = "confirm_delete")]
    pub delete: bool,
    /// Confirms --delete.
    #[arg(long, requires = "delete")]
    pub confirm_delete: bool,
    /// The most users one revoke may take back, as a count or a share of those it would
    /// (10, 5%): more, and none is [default: 5%, at least 1].
    #[arg(long, value_name = "N|N%")]
    pub max_absent: Option<String>,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Providers, by email or username.
    pub ids: Vec<String>,
    /// Or the providers of this CSV or workbook.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub input_args: InputArgs,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// How to print the verdicts on stdout [default: table].
    #[arg(long, value_enum)]
    pub format: Option<StatusFormat>,
    /// Apply the safe remedy: mark an existing email verified; re-issue an expired or lost
    /// invitation (exactly as `run` does). Never touches a confirmed user's password.
    #[arg(long)]
    pub fix: bool,
    #[command(flatten)]
    pub send: SendArgs,
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Text encoding of the CSV (default: detected; UTF-8 with or without BOM, or Shift_JIS).
    #[arg(long, value_enum)]
    pub encoding: Option<Encoding>,
    /// The worksheet of an .xlsx, .xls or .ods input to read [default: the first visible one].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The CSV or workbook (.xlsx, .xls, .ods) of providers to validate.
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub input_args: InputArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The CSV or workbook (.xlsx, .xls, .ods) of providers (header row; `email` required).
    pub input: PathBuf,
    #[command(flatten)]
    pub input_args: InputArgs,
    /// Read only: report what would be done for each row, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where each run writes <run-id>.json, .csv and .html (the page) [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// When to re-issue a temporary password to a user still in FORCE_CHANGE_PASSWORD
    /// [default: expired].
    #[arg(long, value_enum)]
    pub reissue: Option<Reissue>,
    /// How invitations reach people [default: email]. `suppress` sends nothing and needs
    /// --password-file.
    #[arg(long, value_enum)]
    pub delivery: Option<Delivery>,
    /// With --delivery suppress: a new file (mode 0600, never overwritten) that receives
    /// username,temporary_password for out-of-band delivery.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Share of each documented Cognito quota to use, above 0 and at most 1 [default: 0.8].
    #[arg(long)]
    pub rate_fraction: Option<f64>,
    /// Rows in flight at once [default: 64].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// How to read existing users: per-row AdminGetUser, a ListUsers scan, or whichever costs
    /// fewer quota-seconds [default: auto].
    #[arg(long, value_enum)]
    pub lookup: Option<Lookup>,
    /// Which rows to read from Cognito: `auto` skips providers seen confirmed whose row has not
    /// changed, re-reading each at least every --refresh-after; `full` reads every row
    /// [default: auto].
    #[arg(long, value_enum)]
    pub refresh: Option<Refresh>,
    /// With --refresh auto: the longest a confirmed provider goes without a re-read, such as
    /// `7d` or `36h` [default: 7d].
    #[arg(long, value_name = "DURATION")]
    pub refresh_after: Option<String>,
    /// Re-issue an expired invitation at most this many times per user [default: 3].
    #[arg(long)]
    pub max_reissues: Option<u32>,
    /// Bring existing users in line with their rows: `attributes` writes the cells that differ
    /// (an empty cell is no opinion); `groups` also takes users out of groups the file names on
    /// any row but their own row does not list; comma-separated [default: create-only].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub update: Option<Vec<UpdatePart>>,
    /// With --update attributes: an empty cell deletes the attribute.
    #[arg(long)]
    pub clear_empty: bool,
    #[command(flatten)]
    pub offboarding: OffboardArgs,
    /// Invitations to send per rolling 24 hours, counting earlier runs [default: 50 with
    /// Cognito's own email sender, unlimited otherwise].
    #[arg(long)]
    pub email_budget: Option<u32>,
    /// Emails per second, where the pool sends through SES and SES's own MaxSendRate cannot be
    /// read [default: SES's MaxSendRate].
    #[arg(long)]
    pub email_rate: Option<f64>,
    /// SMS invitations per rolling 24 hours, counting earlier runs [default: unlimited; SNS
    /// has a monthly spend limit of its own].
    #[arg(long)]
    pub sms_budget: Option<u32>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
    #[command(flatten)]
    pub hand_over: HandOverArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Limit the report to the providers in this CSV or workbook.
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub input_args: InputArgs,
    /// Where the report is written [default: ./reports].
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Report every user in the pool, not only those this tool onboarded.
    #[arg(long)]
    pub all: bool,
    /// Also print the report on stdout in this form.
    #[arg(long, value_enum)]
    pub format: Option<StatusFormat>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
    #[command(flatten)]
    pub hand_over: HandOverArgs,
}

/// Offboarding: what `run` does with the providers of its list that are no longer in it.
#[derive(Debug, Args)]
pub struct OffboardArgs {
    /// The list this file is: each provider records the cohort it last came from, and --absent
    /// only ever touches this cohort's [default: the file's name without its extension].
    #[arg(long)]
    pub cohort: Option<String>,
    /// What to do with providers of this cohort who are no longer in the list: keep them, or
    /// disable them (AdminDisableUser, which ends their sessions; never deleted)
    /// [default: keep].
    #[arg(long, value_enum)]
    pub absent: Option<Absent>,
    /// The most providers one run may disable, as a count or a share of the cohort (10, 5%):
    /// when more would be, none is, the list goes next to the report, and the run exits 5
    /// [default: 5%, at least 1].
    #[arg(long, value_name = "N|N%")]
    pub max_absent: Option<String>,
    /// Enable again a provider this tool disabled who is back in the list [default: leave it
    /// disabled and report it; `enable` restores it].
    #[arg(long)]
    pub reenable: bool,
}

/// How a scheduled command is watched: every one is told when it ends, and none can change how
/// it ends.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// A dead-man's-switch check to ping (healthchecks.io's protocol): URL/start when the run
    /// begins, URL when it ends with exit 0, URL/<exit code> otherwise; `{run_id}` may appear in
    /// it. A ping that fails is a warning and never changes the exit code.
    #[arg(long, value_name = "URL")]
    pub ping_url: Option<String>,
    /// Write the run's figures to this file in the Prometheus text format (for node_exporter's
    /// textfile collector), replacing it at once; `run` and `status` may share one file.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Print the run's figures at its end as one CloudWatch Embedded Metric Format record on
    /// stderr (with --log-format json, every line of stderr is then JSON).
    #[arg(long)]
    pub emf: bool,
    /// Write the run's one-line summary (exit code and counts) to this file at its end, such
    /// as /dev/termination-log in a Kubernetes pod.
    #[arg(long, value_name = "PATH")]
    pub termination_log: Option<PathBuf>,
}

/// Closing the loop with the providers who have set their password.
#[derive(Debug, Args)]
pub struct HandOverArgs {
    /// Run this shell command once for each newly confirmed provider, with a JSON object on
    /// stdin (pool, username, email, groups, invited_at, confirmed_at); a provider counts as
    /// handed over when it exits 0, and is tried again on the next run otherwise.
    #[arg(long)]
    pub on_confirmed: Option<String>,
    /// Seconds the --on-confirmed command may take before it is stopped [default: 60].
    #[arg(long)]
    pub on_confirmed_timeout: Option<f64>,
    /// Give the --on-confirmed command this AWS credential variable after all
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...): it inherits the
    /// environment without them otherwise. Repeat for each.
    #[arg(long, value_name = "NAME")]
    pub on_confirmed_env: Vec<String>,
    /// Run COMMAND once per invitation for each pending provider whose temporary password
    /// expires within DURATION (1d, 36h), with a JSON object on stdin (pool, username, email,
    /// name, invited_at, expires_at; never a password): a reminder through your own channel.
    /// Recorded only when it exits 0, tried again on the next run otherwise;
    /// --on-confirmed-timeout and --on-confirmed-env apply to it too.
    #[arg(long, num_args = 2, value_names = ["DURATION", "COMMAND"])]
    pub on_expiring: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Auto,
    #[value(name = "utf-8", alias = "utf8")]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    #[value(name = "shift_jis", alias = "sjis", alias = "cp932")]
    #[serde(alias = "sjis", alias = "cp932")]
    ShiftJis,
}

// The domain's choices are defined where they are decided on (`plan`, `lookup`); the command line
// only names them, so the pure modules depend on no CLI type.
macro_rules! value_enum {
    ($ty:ty { $($variant:ident => $name:literal $(: $help:literal)?),+ $(,)? }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(<$ty>::$variant),+]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $(<$ty>::$variant => PossibleValue::new($name)$(.help($help))?),+
                })
            }
        }
    };
}

value_enum!(Reissue {
    Expired => "expired": "Only once the temporary password has expired",
    Never => "never": "Never: report expired users as pending",
    Always => "always": "Every run (use with care: each re-issue sends a message)",
});

value_enum!(Delivery {
    Email => "email",
    Sms => "sms",
    Suppress => "suppress": "Send nothing; temporary passwords go to --password-file",
});

value_enum!(UpdatePart {
    Attributes => "attributes": "Write the attribute cells that differ from the user's",
    Groups => "groups": "Also remove users from groups the file manages and the row no longer lists",
});

value_enum!(Refresh {
    Auto => "auto": "Read only rows that are new, changed, pending, or due for a periodic re-read",
    Full => "full": "Read every row",
});

value_enum!(Lookup {
    Auto => "auto",
    Get => "get",
    Scan => "scan",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_after_the_subcommand_too() {
        let cli = Cli::try_parse_from([
            "cognito-onboard",
            "run",
            "in.csv",
            "--user-pool-id",
            "eu-west-1_x",
            "--dry-run",
        ])
        .expect("parses");
        assert_eq!(cli.global.user_pool_id.as_deref(), Some("eu-west-1_x"));
        match cli.command {
            Command::Run(run) => assert!(run.dry_run),
            other => panic!("parsed as {other:?}"),
        }
    }
}
