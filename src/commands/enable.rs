//! `enable`: each provider named is enabled again (AdminEnableUser), written ahead and settled
//! like every write, with the same `sub` and password it had: how a provider who was disabled
//! (by this tool or anyone) comes back. Must not decide who is offboarded (`offboard`).

use crate::budget::Budget;
use crate::config::{Common, EnableSettings};
use crate::error::{Ending, Error};
use crate::help;
use crate::offboard::{Candidate, Step};
use crate::report::model::Outcome;
use crate::session::{Session, Spec, open_pool, rows_report};
use crate::state::{Access, Known, Offboard};

pub(crate) async fn run(common: &Common, settings: &EnableSettings) -> Result<Ending, Error> {
    let (session, ()) = Session::open(common, offboard_spec("enable"), || Ok(())).await?;
    let opened = session.opened();
    let result = async {
        let (calls, pool) = open_pool(common, opened.pool_id).await?;
        let known = opened.state.known(&pool.id)?;
        let step = Step {
            calls: &calls,
            state: opened.state,
            pool: &pool.id,
            run_id: opened.run_id,
            dry_run: false,
            only_pending: false,
        };
        let mut rows = Vec::new();
        for (line, typed) in (1..).zip(&settings.ids) {
            let id = match help::checked_id(typed) {
                Ok(id) => id,
                Err(why) => {
                    rows.push(help::invalid_id(line, typed, &why));
                    continue;
                }
            };
            let (user, key) = help::find(&calls, &known, &id).await?;
            let key = key.unwrap_or_else(|| id.clone());
            let remembered = known.get(&key).cloned().unwrap_or_else(|| Known {
                username: user.as_ref().map(|u| u.username.clone()),
                email: user.as_ref().and_then(|u| u.email.clone()),
                ..Known::default()
            });
            let candidate = Candidate::of(&key, &remembered, "asked to enable".into());
            let mut r = step.carry_out(&candidate, Offboard::Enable).await;
            r.row = line;
            rows.push(r);
        }
        let budget = Budget::new(crate::cognito::Delivery::Suppress, None);
        // Already enabled is what was asked; not in the pool, or a failure, is not.
        rows_report(
            &opened,
            ("enable", false),
            &calls.exec,
            &budget,
            rows,
            |r| {
                let n = |o| r.summary.get(&o).copied().unwrap_or(0);
                match crate::report::ending(&r.summary, r.interrupted) {
                    Ending::Settled if n(Outcome::Attention) > 0 => Ending::RowsFailed,
                    ending => ending,
                }
            },
        )
    }
    .await;
    session.close(result).await
}

/// What an offboarding command opens: the state shared with a scheduled run (it does not wait
/// for one), its report, recorded as a run.
pub(crate) fn offboard_spec(command: &'static str) -> Spec<'static> {
    Spec {
        command,
        access: Access::Shared,
        input: None,
        page: false,
        password_file: None,
        record: true,
        monitoring: None,
    }
}
