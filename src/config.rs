//! Settings, resolved once per command: command line, then environment (through clap), then the
//! TOML settings file, then defaults, with one validation. [`resolve`] turns the parsed command
//! line into [`Common`] and the command's own settings ([`Settings`]); no command below it sees
//! the settings file or clap's arguments. Errors name the setting and the bad value. Must not
//! talk to Cognito or read the input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{
    Cli, Command, Encoding, GlobalArgs, InputArgs, LogFormat, MonitorArgs, StateCommand,
    StatusFormat,
};
use crate::cognito::{Connection, Delivery, region_of_pool};
use crate::error::Error;
use crate::input::{self, EncodingChoice};
use crate::limiter::{Category, QuotaSource, Quotas};
use crate::lookup::Lookup;
use crate::monitor::Monitoring;
use crate::plan::{Refresh, Reissue, Update, UpdatePart};
use crate::state::{Location, Table};

/// The settings file. Every key is optional; unknown keys are an error (a typo must not be
/// silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub user_pool_id: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub state: Option<PathBuf>,
    pub state_region: Option<String>,
    /// How long a dynamodb:// state's run lock lasts unless renewed ("60s").
    pub state_lease: Option<String>,
    pub encoding: Option<Encoding>,
    pub report_dir: Option<PathBuf>,
    pub reissue: Option<Reissue>,
    pub delivery: Option<Delivery>,
    pub rate_fraction: Option<f64>,
    pub concurrency: Option<usize>,
    pub lookup: Option<Lookup>,
    pub max_reissues: Option<u32>,
    /// `auto` (default) or `full`.
    pub refresh: Option<Refresh>,
    /// The longest a confirmed provider goes without a re-read ("7d", "36h").
    pub refresh_after: Option<String>,
    /// `run --update`: `["attributes"]`, `["attributes", "groups"]`; absent: create-only.
    pub update: Option<Vec<UpdatePart>>,
    /// With `update = ["attributes"]`: an empty cell deletes the attribute.
    pub clear_empty: Option<bool>,
    pub email_budget: Option<u32>,
    /// Emails per second, where SES's own `MaxSendRate` cannot be read.
    pub email_rate: Option<f64>,
    /// SMS invitations per rolling 24 hours (SNS has a monthly spend limit of its own).
    pub sms_budget: Option<u32>,
    /// A shell command run once per newly confirmed provider (JSON on stdin).
    pub on_confirmed: Option<String>,
    /// Seconds the --on-confirmed command may take.
    pub on_confirmed_timeout_secs: Option<f64>,
    /// AWS credential variables the --on-confirmed command is given after all.
    pub on_confirmed_env: Option<Vec<String>>,
    /// A reminder command run once per invitation for pending providers about to expire.
    pub on_expiring: Option<String>,
    /// How soon before the expiry the reminder is due ("1d", the default; "36h").
    pub on_expiring_within: Option<String>,
    /// A dead-man's-switch check `run` and `status` ping (`--ping-url`).
    pub ping_url: Option<String>,
    /// The Prometheus textfile `run` and `status` write (`--metrics-file`).
    pub metrics_file: Option<PathBuf>,
    /// Print an EMF record at the end of `run` and `status` (`--emf`).
    pub emf: Option<bool>,
    /// Where `run` and `status` write their one-line summary (`--termination-log`).
    pub termination_log: Option<PathBuf>,
    /// The list the input is (`--cohort`; default: the input's file name without extension).
    pub cohort: Option<String>,
    /// `keep` or `disable` the providers of the cohort no longer in the list (`--absent`).
    pub absent: Option<crate::offboard::Absent>,
    /// The most providers one step may take off: "10" or "5%" (`--max-absent`).
    pub max_absent: Option<String>,
    /// Enable again a provider this tool disabled who is back in the list (`--reenable`).
    pub reenable: Option<bool>,
    /// Seconds one attempt of one call may take.
    pub attempt_timeout_secs: Option<f64>,
    /// Attempts per call before a row fails (throttling and passing faults).
    pub max_attempts: Option<u32>,
    /// Ask Cognito (GetProvisionedLimit) for each category's rate on this account.
    pub use_provisioned_limits: Option<bool>,
    /// Full quota per category in requests per second, where the account's differs from the
    /// documented default (for example a raised UserCreation quota). The fraction still applies.
    #[serde(default)]
    pub quotas: BTreeMap<Category, f64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read settings file", path, e))?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("settings file {}: {e}", path.display())))
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub pool_id: Option<String>,
    pub connection: Connection,
    pub log_format: LogFormat,
    /// -2 (errors only) to 2 (trace).
    pub verbosity: i8,
    pub progress: bool,
    pub state: Location,
    pub max_attempts: u32,
    pub quotas: Quotas,
    pub use_provisioned_limits: bool,
    pub rate_fraction: f64,
    pub concurrency: usize,
    pub report_dir: PathBuf,
}

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub input: PathBuf,
    pub input_options: input::Options,
    pub dry_run: bool,
    pub reissue: Reissue,
    pub delivery: Delivery,
    pub password_file: Option<PathBuf>,
    pub lookup: Lookup,
    pub max_reissues: u32,
    /// None: the default for the pool's email sender.
    pub email_budget: Option<u32>,
    /// None: SES's `MaxSendRate` where it can be read, else unpaced beyond the quotas.
    pub email_rate: Option<f64>,
    /// None: unlimited.
    pub sms_budget: Option<u32>,
    pub on_confirmed: Option<crate::handover::OnConfirmed>,
    /// `--on-expiring DURATION COMMAND`.
    pub on_expiring: Option<crate::handover::OnExpiring>,
    /// `--update` and `--clear-empty`.
    pub update: Update,
    pub refresh: Refresh,
    pub refresh_after: chrono::Duration,
    /// `--ping-url`, `--metrics-file`, `--emf`, `--termination-log`.
    pub monitoring: Monitoring,
    /// `--cohort`, `--absent`, `--max-absent`, `--reenable`.
    pub offboarding: Offboarding,
}

/// How `status` and `doctor` judge a provider, and what the help desk's writes follow: the
/// choices a `run` with the settings file and no options would make.
#[derive(Debug, Clone, Copy)]
pub struct Judge {
    pub reissue: Reissue,
    pub delivery: Delivery,
    pub max_reissues: u32,
}

/// How the help desk's writes reach the providers, and the budgets they draw on, resolved as
/// `run` resolves its own.
#[derive(Debug, Clone)]
pub struct Sending {
    pub delivery: Delivery,
    pub password_file: Option<PathBuf>,
    pub caps: crate::budget::Caps,
}

/// `check`'s settings.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub input: Option<PathBuf>,
    pub input_options: input::Options,
    /// The delivery `run` would use, whose template is checked.
    pub delivery: Delivery,
}

/// `status`'s settings.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub input: Option<PathBuf>,
    pub input_options: input::Options,
    pub all: bool,
    pub format: Option<StatusFormat>,
    pub on_confirmed: Option<crate::handover::OnConfirmed>,
    pub on_expiring: Option<crate::handover::OnExpiring>,
    pub judge: Judge,
    pub monitoring: Monitoring,
}

/// `doctor`'s settings.
#[derive(Debug, Clone)]
pub struct DoctorSettings {
    pub ids: Vec<String>,
    pub input: Option<PathBuf>,
    pub input_options: input::Options,
    pub format: Option<StatusFormat>,
    /// `--fix`, and how its writes are sent.
    pub fix: Option<Sending>,
    /// The email cap the verdicts weigh (the same as `--fix`'s).
    pub email_budget: Option<u32>,
    pub judge: Judge,
}

/// `reissue`'s and `reset`'s settings.
#[derive(Debug, Clone)]
pub struct DeskSettings {
    pub ids: Vec<String>,
    pub send: Sending,
    pub judge: Judge,
    /// `reset --temporary`.
    pub temporary: bool,
}

/// How `run` treats the providers of its list that are no longer in it.
#[derive(Debug, Clone)]
pub struct Offboarding {
    /// The list the file is (`--cohort`, else the file's stem).
    pub cohort: String,
    pub absent: crate::offboard::Absent,
    pub cap: crate::offboard::Cap,
    /// `--reenable`: a provider this tool disabled, back in the list, is enabled again.
    pub reenable: bool,
}

/// `enable`'s settings.
#[derive(Debug, Clone)]
pub struct EnableSettings {
    pub ids: Vec<String>,
}

/// Whose users `revoke` takes back.
#[derive(Debug, Clone)]
pub enum Revoked {
    /// Those this run created.
    Run(String),
    /// Those this file lists.
    Input(PathBuf, input::Options),
}

/// `revoke`'s settings.
#[derive(Debug, Clone)]
pub struct RevokeSettings {
    pub from: Revoked,
    pub dry_run: bool,
    /// `--delete --confirm-delete`: delete instead of disable.
    pub delete: bool,
    pub cap: crate::offboard::Cap,
}

/// `state`'s settings: what to do with the state.
#[derive(Debug, Clone)]
pub enum StateSettings {
    Init,
    Export(PathBuf),
    Import(PathBuf),
}

/// A command's own settings.
#[derive(Debug, Clone)]
pub enum Settings {
    Check(CheckSettings),
    Run(RunSettings),
    Status(StatusSettings),
    Doctor(DoctorSettings),
    Reissue(DeskSettings),
    Reset(DeskSettings),
    Enable(EnableSettings),
    Revoke(RevokeSettings),
    State(StateSettings),
}

/// Resolves the command line once: the settings every command shares and the command's own.
/// `completions` and `man` need none and are not resolved.
pub fn resolve(cli: &Cli, stderr_is_terminal: bool) -> Result<(Common, Settings), Error> {
    let file = file_config(&cli.global)?;
    let (rate_fraction, concurrency, report_dir) = match &cli.command {
        Command::Run(a) => (a.rate_fraction, a.concurrency, a.report_dir.as_deref()),
        Command::Status(a) => (None, None, a.report_dir.as_deref()),
        Command::Doctor(a) => (None, None, a.report_dir.as_deref()),
        Command::Reissue(a) => (None, None, a.report_dir.as_deref()),
        Command::Reset(a) => (None, None, a.report_dir.as_deref()),
        Command::Enable(a) => (None, None, a.report_dir.as_deref()),
        Command::Revoke(a) => (None, None, a.report_dir.as_deref()),
        Command::Check(_) | Command::State(_) | Command::Completions(_) | Command::Man => {
            (None, None, None)
        }
    };
    let common = common(
        &cli.global,
        &file,
        rate_fraction,
        concurrency,
        report_dir,
        stderr_is_terminal,
    )?;
    Ok((common, settings(&cli.command, &file)?))
}

/// The command's own settings.
fn settings(command: &Command, file: &FileConfig) -> Result<Settings, Error> {
    let judge = judge(file);
    Ok(match command {
        Command::Check(a) => Settings::Check(CheckSettings {
            input: a.input.clone(),
            input_options: input_options(&a.input_args, file),
            delivery: judge.delivery,
        }),
        Command::Run(a) => Settings::Run(run(a, file)?),
        Command::Status(a) => Settings::Status(StatusSettings {
            input: a.input.clone(),
            input_options: input_options(&a.input_args, file),
            all: a.all,
            format: a.format,
            on_confirmed: on_confirmed(&a.hand_over, file)?,
            on_expiring: on_expiring(&a.hand_over, file)?,
            judge,
            monitoring: monitoring(&a.monitor, file),
        }),
        Command::Doctor(a) => Settings::Doctor(DoctorSettings {
            ids: a.ids.clone(),
            input: a.input.clone(),
            input_options: input_options(&a.input_args, file),
            format: a.format,
            fix: if a.fix {
                Some(send(&a.send, file)?)
            } else {
                None
            },
            email_budget: a.send.email_budget.or(file.email_budget),
            judge,
        }),
        Command::Reissue(a) => Settings::Reissue(DeskSettings {
            ids: a.ids.clone(),
            send: send(&a.send, file)?,
            judge,
            temporary: false,
        }),
        Command::Reset(a) => Settings::Reset(reset(a, file, judge)?),
        Command::State(c) => Settings::State(match c {
            StateCommand::Init => StateSettings::Init,
            StateCommand::Export(f) => StateSettings::Export(f.file.clone()),
            StateCommand::Import(f) => StateSettings::Import(f.file.clone()),
        }),
        Command::Enable(a) => Settings::Enable(EnableSettings { ids: a.ids.clone() }),
        Command::Revoke(a) => Settings::Revoke(RevokeSettings {
            from: match (&a.run, &a.input) {
                (Some(run), _) => Revoked::Run(run.clone()),
                (None, Some(path)) => {
                    Revoked::Input(path.clone(), input_options(&a.input_args, file))
                }
                (None, None) => {
                    return Err(Error::Config(
                        "revoke: pass --run RUN_ID or --input FILE".into(),
                    ));
                }
            },
            dry_run: a.dry_run,
            delete: a.delete && a.confirm_delete,
            cap: cap(a.max_absent.as_deref(), file)?,
        }),
        Command::Completions(_) | Command::Man => {
            return Err(Error::Config(
                "completions and man are answered before any settings are read".into(),
            ));
        }
    })
}

/// `--max-absent`, else the file's `max_absent`, else 5% of the cohort (at least 1).
fn cap(arg: Option<&str>, file: &FileConfig) -> Result<crate::offboard::Cap, Error> {
    match arg.or(file.max_absent.as_deref()) {
        None => Ok(crate::offboard::Cap::DEFAULT),
        Some(text) => crate::offboard::Cap::parse(text)
            .map_err(|why| Error::Config(format!("max_absent {why}"))),
    }
}

/// `run`'s offboarding: the cohort is `--cohort`, else the file's `cohort`, else the input
/// file's name without its extension (providers.csv: `providers`).
fn offboarding(
    args: &crate::cli::OffboardArgs,
    input: &Path,
    file: &FileConfig,
) -> Result<Offboarding, Error> {
    let cohort = args
        .cohort
        .clone()
        .or_else(|| file.cohort.clone())
        .or_else(|| input.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::Config("cohort: give the list a name with --cohort".into()))?;
    Ok(Offboarding {
        cohort,
        absent: args.absent.or(file.absent).unwrap_or_default(),
        cap: cap(args.max_absent.as_deref(), file)?,
        reenable: args.reenable || file.reenable.unwrap_or(false),
    })
}

/// `reset`'s settings: `--temporary` writes a password to the file, so it sends nothing.
fn reset(
    args: &crate::cli::ResetArgs,
    file: &FileConfig,
    judge: Judge,
) -> Result<DeskSettings, Error> {
    let send = send(&args.send, file)?;
    if args.temporary && send.delivery != Delivery::Suppress {
        return Err(Error::Config(
            "reset --temporary sends nothing: pass --delivery suppress --password-file PATH".into(),
        ));
    }
    Ok(DeskSettings {
        ids: args.ids.clone(),
        send,
        judge,
        temporary: args.temporary,
    })
}

/// The help desk's sending, with `run`'s precedence: the command line, then the file, then the
/// defaults.
fn send(args: &crate::cli::SendArgs, file: &FileConfig) -> Result<Sending, Error> {
    Ok(Sending {
        delivery: delivery(args.delivery, args.password_file.as_deref(), file)?,
        password_file: args.password_file.clone(),
        caps: crate::budget::Caps {
            email: args.email_budget.or(file.email_budget),
            sms: args.sms_budget.or(file.sms_budget),
        },
    })
}

pub const DEFAULT_STATE: &str = "cognito-onboard.db";
pub const DEFAULT_MAX_REISSUES: u32 = 3;
pub const DEFAULT_REPORT_DIR: &str = "reports";

fn encoding(e: Option<Encoding>) -> EncodingChoice {
    match e {
        None | Some(Encoding::Auto) => EncodingChoice::Auto,
        Some(Encoding::Utf8) => EncodingChoice::Utf8,
        Some(Encoding::ShiftJis) => EncodingChoice::ShiftJis,
    }
}

/// Reads the settings file named by `--config`, if any.
fn file_config(global: &GlobalArgs) -> Result<FileConfig, Error> {
    match &global.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    }
}

/// How to read the input: the encoding (the option, else the file's setting) and the sheet.
fn input_options(args: &InputArgs, file: &FileConfig) -> input::Options {
    input::Options {
        encoding: encoding(args.encoding.or(file.encoding)),
        sheet: args.sheet.clone(),
    }
}

/// Merges and validates the shared settings. `report_dir` and the run options that the
/// command line may also set are passed in by the caller.
fn common(
    global: &GlobalArgs,
    file: &FileConfig,
    rate_fraction: Option<f64>,
    concurrency: Option<usize>,
    report_dir: Option<&Path>,
    stderr_is_terminal: bool,
) -> Result<Common, Error> {
    let pace = pace(file, rate_fraction, concurrency)?;
    let quotas = quotas(file)?;
    let connection = connection(global, file, pace.attempt_timeout)?;
    let pool_id = global
        .user_pool_id
        .clone()
        .or_else(|| file.user_pool_id.clone())
        .filter(|p| !p.trim().is_empty());
    Ok(Common {
        state: state_location(global, file, pool_id.as_deref(), &connection, &quotas)?,
        pool_id,
        connection,
        log_format: global
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text),
        verbosity: global.verbose as i8 - global.quiet as i8,
        progress: stderr_is_terminal && !global.no_progress,
        max_attempts: pace.max_attempts,
        quotas,
        use_provisioned_limits: file.use_provisioned_limits.unwrap_or(true),
        rate_fraction: pace.rate_fraction,
        concurrency: pace.concurrency,
        report_dir: report_dir
            .map(Path::to_path_buf)
            .or_else(|| file.report_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REPORT_DIR)),
    })
}

/// How fast and how often a command calls: validated, each in its range.
struct Pace {
    rate_fraction: f64,
    concurrency: usize,
    attempt_timeout: f64,
    max_attempts: u32,
}

fn pace(
    file: &FileConfig,
    rate_fraction: Option<f64>,
    concurrency: Option<usize>,
) -> Result<Pace, Error> {
    let rate_fraction = rate_fraction.or(file.rate_fraction).unwrap_or(0.8);
    if !(rate_fraction > 0.0 && rate_fraction <= 1.0) {
        return Err(Error::Config(format!(
            "rate_fraction must be above 0 and at most 1, got {rate_fraction}"
        )));
    }
    let concurrency = concurrency.or(file.concurrency).unwrap_or(64);
    if !(1..=1024).contains(&concurrency) {
        return Err(Error::Config(format!(
            "concurrency must be between 1 and 1024, got {concurrency}"
        )));
    }
    let attempt_timeout = file.attempt_timeout_secs.unwrap_or(10.0);
    if !(attempt_timeout > 0.0 && attempt_timeout <= 300.0) {
        return Err(Error::Config(format!(
            "attempt_timeout_secs must be above 0 and at most 300, got {attempt_timeout}"
        )));
    }
    let max_attempts = file.max_attempts.unwrap_or(8);
    if !(1..=50).contains(&max_attempts) {
        return Err(Error::Config(format!(
            "max_attempts must be between 1 and 50, got {max_attempts}"
        )));
    }
    Ok(Pace {
        rate_fraction,
        concurrency,
        attempt_timeout,
        max_attempts,
    })
}

/// The quotas the settings file raises or lowers, each a positive rate.
fn quotas(file: &FileConfig) -> Result<Quotas, Error> {
    let mut quotas = Quotas::default();
    for (category, rate) in &file.quotas {
        if !(*rate > 0.0 && rate.is_finite()) {
            return Err(Error::Config(format!(
                "quotas.{}: must be a positive number of requests per second, got {rate}",
                category.name()
            )));
        }
        quotas.set(*category, *rate, QuotaSource::ConfigFile);
    }
    Ok(quotas)
}

/// How to reach AWS: region, profile and endpoint (an emulator's must be a URL).
fn connection(global: &GlobalArgs, file: &FileConfig, timeout: f64) -> Result<Connection, Error> {
    let endpoint_url = global
        .endpoint_url
        .clone()
        .or_else(|| file.endpoint_url.clone())
        .filter(|u| !u.is_empty());
    if let Some(url) = &endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Error::Config(format!(
            "endpoint_url must start with http:// or https://, got {url:?}"
        )));
    }
    Ok(Connection {
        region: global.region.clone().or_else(|| file.region.clone()),
        profile: global.profile.clone().or_else(|| file.profile.clone()),
        endpoint_url,
        attempt_timeout: Duration::from_secs_f64(timeout),
    })
}

/// Where the state lives. A table's region is `--state-region`, else the pool's region (the
/// tool's `--region`, or the pool id's), else the AWS configuration's; its endpoint is
/// `--endpoint-url`, and the SDK reads `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_DYNAMODB`.
fn state_location(
    global: &GlobalArgs,
    file: &FileConfig,
    pool_id: Option<&str>,
    connection: &Connection,
    quotas: &Quotas,
) -> Result<Location, Error> {
    let path = global
        .state
        .clone()
        .or_else(|| file.state.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE));
    let Some(name) = Location::table_name(&path) else {
        return Ok(Location::File(path));
    };
    let lease = match (&global.state_lease, &file.state_lease) {
        (Some(d), _) => *d,
        (None, Some(text)) => humantime::parse_duration(text)
            .map_err(|e| Error::Config(format!("state_lease {text:?}: {e}")))?,
        (None, None) => DEFAULT_STATE_LEASE,
    };
    if lease < Duration::from_secs(3) {
        return Err(Error::Config(format!(
            "state_lease must be at least 3s (it is renewed every third of it), got {}",
            humantime::format_duration(lease)
        )));
    }
    Ok(Location::Dynamo(Table {
        name: name?.to_string(),
        region: global
            .state_region
            .clone()
            .or_else(|| file.state_region.clone())
            .or_else(|| connection.region.clone())
            .or_else(|| pool_id.and_then(region_of_pool).map(str::to_string)),
        profile: connection.profile.clone(),
        endpoint_url: connection.endpoint_url.clone(),
        lease,
        attempt_timeout: connection.attempt_timeout,
        rate: quotas.get(Category::StateTable),
    }))
}

/// How long a DynamoDB state's run lock lasts unless renewed.
pub const DEFAULT_STATE_LEASE: Duration = Duration::from_secs(60);

/// What `status` and the help desk judge each provider by: the choices a `run` with the
/// settings file and no options would make (re-issue policy, delivery, re-issue cap).
fn judge(file: &FileConfig) -> Judge {
    Judge {
        reissue: file.reissue.unwrap_or(Reissue::Expired),
        delivery: file.delivery.unwrap_or(Delivery::Email),
        max_reissues: file.max_reissues.unwrap_or(DEFAULT_MAX_REISSUES),
    }
}

/// The delivery of a command that invites (`run`, and the help desk's), checked against its
/// password file: suppress needs one, and only suppress takes one.
fn delivery(
    chosen: Option<Delivery>,
    password_file: Option<&Path>,
    file: &FileConfig,
) -> Result<Delivery, Error> {
    let delivery = chosen.or(file.delivery).unwrap_or(Delivery::Email);
    match (delivery, password_file) {
        (Delivery::Suppress, None) => Err(Error::Config(
            "--delivery suppress needs --password-file, the only place the temporary passwords go"
                .into(),
        )),
        (Delivery::Email | Delivery::Sms, Some(_)) => Err(Error::Config(
            "--password-file only goes with --delivery suppress (Cognito delivers the passwords otherwise)"
                .into(),
        )),
        _ => Ok(delivery),
    }
}

/// The `--on-confirmed` command, its time limit (default 60 s) and the credential variables it
/// is given on purpose, if a command is set.
fn on_confirmed(
    args: &crate::cli::HandOverArgs,
    file: &FileConfig,
) -> Result<Option<crate::handover::OnConfirmed>, Error> {
    let Some(command) = args.on_confirmed.as_ref().or(file.on_confirmed.as_ref()) else {
        return Ok(None);
    };
    let pass_env = if args.on_confirmed_env.is_empty() {
        file.on_confirmed_env.clone().unwrap_or_default()
    } else {
        args.on_confirmed_env.clone()
    };
    if let Some(name) = pass_env
        .iter()
        .find(|n| !crate::handover::WITHHELD.contains(&n.as_str()))
    {
        return Err(Error::Config(format!(
            "on_confirmed_env: {name} is not withheld from the --on-confirmed command (it inherits \
             every variable but {}), so there is nothing to give",
            crate::handover::WITHHELD.join(", ")
        )));
    }
    let secs = args
        .on_confirmed_timeout
        .or(file.on_confirmed_timeout_secs)
        .unwrap_or(60.0);
    if !(secs.is_finite() && secs > 0.0) {
        return Err(Error::Config(format!(
            "on_confirmed_timeout_secs must be a number of seconds above 0, not {secs}"
        )));
    }
    Ok(Some(crate::handover::OnConfirmed {
        command: command.clone(),
        timeout: Duration::from_secs_f64(secs),
        pass_env,
    }))
}

/// `--on-expiring DURATION COMMAND`, else the file's `on_expiring` (and `on_expiring_within`,
/// default 1d); its time limit and environment are `--on-confirmed`'s.
fn on_expiring(
    args: &crate::cli::HandOverArgs,
    file: &FileConfig,
) -> Result<Option<crate::handover::OnExpiring>, Error> {
    let (within, command) = match (&args.on_expiring, &file.on_expiring) {
        (Some(pair), _) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
        (Some(_), _) => {
            return Err(Error::Config("--on-expiring takes DURATION COMMAND".into()));
        }
        (None, Some(command)) => (
            file.on_expiring_within
                .clone()
                .unwrap_or_else(|| "1d".into()),
            command.clone(),
        ),
        (None, None) => return Ok(None),
    };
    let bad = |why: String| Error::Config(format!("on_expiring {within:?}: {why}"));
    let d = humantime::parse_duration(within.trim()).map_err(|e| bad(e.to_string()))?;
    let within = chrono::Duration::from_std(d).map_err(|e| bad(e.to_string()))?;
    if within <= chrono::Duration::zero() {
        return Err(bad("must be longer than nothing, such as 1d".into()));
    }
    let hook_args = crate::cli::HandOverArgs {
        on_confirmed: Some(command),
        on_confirmed_timeout: args.on_confirmed_timeout,
        on_confirmed_env: args.on_confirmed_env.clone(),
        on_expiring: None,
    };
    let hook = on_confirmed(
        &hook_args,
        &FileConfig {
            on_confirmed: None,
            on_confirmed_timeout_secs: file.on_confirmed_timeout_secs,
            on_confirmed_env: file.on_confirmed_env.clone(),
            ..FileConfig::default()
        },
    )?;
    Ok(hook.map(|hook| crate::handover::OnExpiring { within, hook }))
}

/// Merges and validates the settings of `run`.
fn run(args: &crate::cli::RunArgs, file: &FileConfig) -> Result<RunSettings, Error> {
    let Judge {
        reissue,
        max_reissues,
        ..
    } = judge(file);
    let delivery = delivery(args.delivery, args.password_file.as_deref(), file)?;
    Ok(RunSettings {
        input: args.input.clone(),
        input_options: input_options(&args.input_args, file),
        dry_run: args.dry_run,
        reissue: args.reissue.unwrap_or(reissue),
        delivery,
        password_file: args.password_file.clone(),
        lookup: args.lookup.or(file.lookup).unwrap_or(Lookup::Auto),
        max_reissues: args.max_reissues.unwrap_or(max_reissues),
        email_budget: args.email_budget.or(file.email_budget),
        email_rate: match args.email_rate.or(file.email_rate) {
            Some(r) if !(r.is_finite() && r > 0.0) => {
                return Err(Error::Config(format!(
                    "email_rate must be a number of emails per second above 0, not {r}"
                )));
            }
            r => r,
        },
        sms_budget: args.sms_budget.or(file.sms_budget),
        on_confirmed: on_confirmed(&args.hand_over, file)?,
        on_expiring: on_expiring(&args.hand_over, file)?,
        update: Update::of(
            args.update
                .as_deref()
                .or(file.update.as_deref())
                .unwrap_or(&[]),
            args.clear_empty || file.clear_empty.unwrap_or(false),
        )
        .map_err(|e| Error::Config(e.to_string()))?,
        refresh: args.refresh.or(file.refresh).unwrap_or(Refresh::Auto),
        refresh_after: match args.refresh_after.as_ref().or(file.refresh_after.as_ref()) {
            None => crate::plan::DEFAULT_REFRESH_AFTER,
            Some(text) => refresh_after(text)?,
        },
        monitoring: monitoring(&args.monitor, file),
        offboarding: offboarding(&args.offboarding, &args.input, file)?,
    })
}

/// How `run` and `status` are watched: each option, else the settings file.
fn monitoring(args: &MonitorArgs, file: &FileConfig) -> Monitoring {
    Monitoring {
        ping_url: args.ping_url.clone().or_else(|| file.ping_url.clone()),
        metrics_file: args
            .metrics_file
            .clone()
            .or_else(|| file.metrics_file.clone()),
        emf: args.emf || file.emf.unwrap_or(false),
        termination_log: args
            .termination_log
            .clone()
            .or_else(|| file.termination_log.clone()),
    }
}

/// `refresh_after` as a duration of at least a minute ("7d", "36h", "1week").
fn refresh_after(text: &str) -> Result<chrono::Duration, Error> {
    let bad = |why: String| Error::Config(format!("refresh_after {text:?}: {why}"));
    let d = humantime::parse_duration(text.trim()).map_err(|e| bad(e.to_string()))?;
    let d = chrono::Duration::from_std(d).map_err(|e| bad(e.to_string()))?;
    if d < chrono::Duration::minutes(1) {
        return Err(bad("must be at least a minute, such as 7d or 36h".into()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        let mut all = vec!["cognito-onboard"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses")
    }

    /// The sample settings file is what operators copy: it must parse, every key known.
    #[test]
    fn the_sample_settings_file_parses_and_its_run_settings_are_valid() {
        let file: FileConfig = toml::from_str(include_str!("../samples/config.example.toml"))
            .expect("samples/config.example.toml parses");
        let cli = parse(&["run", "x.csv"]);
        let Command::Run(args) = &cli.command else {
            panic!()
        };
        let settings = run(args, &file).expect("valid run settings");
        assert_eq!(settings.refresh, Refresh::Auto);
        assert_eq!(settings.refresh_after, chrono::Duration::days(7));
    }

    #[test]
    fn refresh_after_is_a_human_duration_of_a_minute_or_more() {
        assert_eq!(refresh_after("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(refresh_after(" 36h ").unwrap(), chrono::Duration::hours(36));
        for bad in ["", "7", "soon", "10s", "-1d"] {
            let e = refresh_after(bad).unwrap_err().to_string();
            assert!(e.contains("refresh_after"), "{bad}: {e}");
        }
    }

    #[test]
    fn command_line_wins_over_the_file_which_wins_over_defaults() {
        let cli = parse(&[
            "--region",
            "eu-west-1",
            "run",
            "x.csv",
            "--rate-fraction",
            "0.5",
        ]);
        let file: FileConfig = toml::from_str(
            "region = \"us-east-1\"\nprofile = \"ops\"\nrate_fraction = 0.2\nconcurrency = 4\n[quotas]\nUserCreation = 100\n",
        )
        .unwrap();
        let Command::Run(run_args) = &cli.command else {
            panic!()
        };
        let c = common(
            &cli.global,
            &file,
            run_args.rate_fraction,
            run_args.concurrency,
            None,
            false,
        )
        .unwrap();
        assert_eq!(c.connection.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.connection.profile.as_deref(), Some("ops"));
        assert_eq!(c.rate_fraction, 0.5);
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.quotas.get(Category::UserCreation), 100.0);
        assert_eq!(c.quotas.get(Category::UserRead), 120.0);
        assert_eq!(c.report_dir, PathBuf::from("reports"));
        let r = run(run_args, &file).unwrap();
        assert_eq!(r.reissue, Reissue::Expired);
        assert_eq!(r.delivery, Delivery::Email);
    }

    /// The help desk's budgets resolve as `run`'s: the command line, then the settings file,
    /// then the default (none of their own: the sender's).
    #[test]
    fn the_help_desks_budgets_follow_runs_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "email_budget = 5\nsms_budget = 7\n").unwrap();
        let config = file.to_str().unwrap();
        let caps = |args: &[&str]| -> (crate::budget::Caps, crate::budget::Caps) {
            let mut all = vec!["--config", config];
            all.extend_from_slice(args);
            let cli = parse(&all);
            let desk = match resolve(&cli, false).unwrap().1 {
                Settings::Reissue(d) | Settings::Reset(d) => d.send.caps,
                Settings::Doctor(d) => d.fix.expect("--fix").caps,
                _ => panic!("a help-desk command"),
            };
            let mut run_args = vec!["--config", config, "run", "x.csv"];
            run_args.extend(args.iter().skip(2).copied());
            let run = match resolve(&parse(&run_args), false).unwrap().1 {
                Settings::Run(r) => crate::budget::Caps {
                    email: r.email_budget,
                    sms: r.sms_budget,
                },
                _ => panic!("run"),
            };
            (desk, run)
        };
        for command in [
            &["reissue", "a@x.jp"][..],
            &["reset", "a@x.jp"],
            &["doctor", "--fix"],
        ] {
            let (desk, run) = caps(command);
            assert_eq!(
                (desk.email, desk.sms),
                (Some(5), Some(7)),
                "{command:?}: the file"
            );
            assert_eq!((run.email, run.sms), (Some(5), Some(7)), "run: the file");
            let mut given = command.to_vec();
            given.extend(["--email-budget", "1", "--sms-budget", "2"]);
            let (desk, run) = caps(&given);
            assert_eq!(
                (desk.email, desk.sms),
                (Some(1), Some(2)),
                "{command:?}: the line"
            );
            assert_eq!((run.email, run.sms), (Some(1), Some(2)), "run: the line");
        }
    }

    #[test]
    fn a_dynamodb_state_is_paced_at_its_quota_from_the_settings() {
        let rate_of = |settings: &str| {
            let cli = parse(&["--state", "dynamodb://onboard-state", "check"]);
            let file: FileConfig = toml::from_str(settings).unwrap();
            match common(&cli.global, &file, None, None, None, false)
                .unwrap()
                .state
            {
                crate::state::Location::Dynamo(t) => t.rate,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(rate_of(""), Category::StateTable.default_quota());
        assert_eq!(rate_of("[quotas]\nStateTable = 25\n"), 25.0);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let err = toml::from_str::<FileConfig>("rate_fracton = 0.5").unwrap_err();
        assert!(err.to_string().contains("rate_fracton"), "{err}");
        let err = toml::from_str::<FileConfig>("[quotas]\nUserCreaton = 5").unwrap_err();
        assert!(err.to_string().contains("UserCreaton"), "{err}");
        let cli = parse(&["check"]);
        let file = FileConfig {
            rate_fraction: Some(1.5),
            ..FileConfig::default()
        };
        let err = common(&cli.global, &file, None, None, None, false).unwrap_err();
        assert!(err.to_string().contains("rate_fraction"), "{err}");
        let file = FileConfig {
            quotas: [(Category::UserList, -1.0)].into_iter().collect(),
            ..FileConfig::default()
        };
        let err = common(&cli.global, &file, None, None, None, false).unwrap_err();
        assert!(err.to_string().contains("quotas.UserList"), "{err}");
    }

    #[test]
    fn suppress_and_password_file_go_together() {
        let file = FileConfig::default();
        let cli = parse(&["run", "x.csv", "--delivery", "suppress"]);
        let Command::Run(a) = &cli.command else {
            panic!()
        };
        assert!(
            run(a, &file)
                .unwrap_err()
                .to_string()
                .contains("--password-file")
        );
        let cli = parse(&["run", "x.csv", "--password-file", "p.csv"]);
        let Command::Run(a) = &cli.command else {
            panic!()
        };
        assert!(run(a, &file).unwrap_err().to_string().contains("suppress"));
        let cli = parse(&[
            "run",
            "x.csv",
            "--delivery",
            "suppress",
            "--password-file",
            "p.csv",
        ]);
        let Command::Run(a) = &cli.command else {
            panic!()
        };
        assert_eq!(run(a, &file).unwrap().delivery, Delivery::Suppress);
    }
}
