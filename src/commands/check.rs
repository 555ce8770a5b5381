//! `check`: describe the pool (when one is given) and validate the input, writing nothing. Must
//! not write to Cognito, the state or a report.

use std::collections::BTreeMap;

use crate::calls::Probe;
use crate::cohort;
use crate::config::{CheckSettings, Common};
use crate::error::{Ending, Error};
use crate::input::{self, ColumnRules, KeyMode, Record};
use crate::invite;
use crate::report::terminal as render;
use crate::session::connect;

/// `check`: describe the pool (when one is given) and validate the input, writing nothing.
pub(crate) async fn run(common: &Common, settings: &CheckSettings) -> Result<Ending, Error> {
    let reader = match &settings.input {
        Some(path) => Some(input::open(path, &settings.input_options)?),
        None => None,
    };
    let mut template_error = None;
    let connected = match &common.pool_id {
        Some(pool_id) => {
            let (calls, _) = connect(common, pool_id, Probe::never()).await?;
            let pool = calls.describe_pool().await?.value;
            let delivery = settings.delivery;
            let findings = invite::check(
                &pool.invitation,
                delivery,
                pool.temporary_password_validity_days,
            );
            print!("{}", render::pool(&pool, delivery, &findings));
            template_error = findings
                .into_iter()
                .find(invite::Finding::stops_the_run)
                .map(|f| Error::Config(f.to_string()));
            Some((calls, pool))
        }
        None => None,
    };
    let Some(reader) = reader else {
        return template_error.map_or(Ok(Ending::Settled), Err);
    };
    let (key_mode, rules) = match &connected {
        Some((_, pool)) => cohort::rules_for(pool, reader.columns())?,
        None if reader.columns().iter().any(|c| c == "username") => {
            (KeyMode::Username, ColumnRules::default())
        }
        None => (KeyMode::Email, ColumnRules::default()),
    };
    let shown = settings
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    print!(
        "{}",
        render::input(&shown, reader.describe(), reader.columns())
    );
    let (mut valid, mut invalid) = (0u64, 0u64);
    let mut groups = BTreeMap::new();
    for record in reader.records(key_mode, &rules)? {
        match record? {
            Record::Valid(row) => {
                valid += 1;
                cohort::note_groups(&mut groups, &row);
            }
            Record::Invalid(reject) => {
                invalid += 1;
                println!("  {}", cohort::invalid_row(&reject).reason);
            }
        }
    }
    println!("  {valid} valid rows, {invalid} invalid");
    if let Some((calls, pool)) = &connected {
        if !groups.is_empty() {
            cohort::check_groups(calls, &groups).await?;
            println!("  every group exists in the pool");
        }
        if let Some(warning) = render::email_days(pool, valid) {
            print!("{warning}");
        }
    }
    if let Some(e) = template_error {
        return Err(e);
    }
    Ok(if invalid > 0 {
        Ending::RowsFailed
    } else {
        Ending::Settled
    })
}
