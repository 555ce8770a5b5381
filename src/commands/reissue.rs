//! `reissue`: a new invitation now for each provider still in `FORCE_CHANGE_PASSWORD`, sent
//! exactly as `run` sends one (budget, write-ahead intent, state, report), whatever the expiry or
//! `--max-reissues`: an operator asked. Anyone else is refused with the reason. Must not carry a
//! row out itself (`onboard`).

use crate::cognito::UserStatus;
use crate::config::{Common, DeskSettings};
use crate::error::{Ending, Error};
use crate::help;
use crate::onboard;
use crate::plan::Policy;
use crate::session::{Session, Spec, check_invitation, ids_report, open_pool};
use crate::state::Access;

pub(crate) async fn run(common: &Common, settings: &DeskSettings) -> Result<Ending, Error> {
    let send = &settings.send;
    let (mut session, ()) = Session::open(common, desk_spec("reissue", send), || Ok(())).await?;
    let password_file = session.take_password_file();
    let opened = session.opened();
    let result = async {
        let (calls, pool) = open_pool(common, opened.pool_id).await?;
        check_invitation(&pool, send.delivery)?;
        let known = opened.state.known(&pool.id)?;
        // Who may be re-invited, and a reason for everyone else.
        let mut refused = Vec::new();
        let mut rows = Vec::new();
        for (line, typed) in (1..).zip(&settings.ids) {
            let id = match help::checked_id(typed) {
                Ok(id) => id,
                Err(why) => {
                    refused.push(help::invalid_id(line, typed, &why));
                    continue;
                }
            };
            match help::find(&calls, &known, &id).await? {
                (Some(user), key) if user.status == UserStatus::ForceChangePassword => {
                    rows.push(help::row(line, &id, &user, key, &pool));
                }
                (user, _) => refused.push(help::refused(line, &id, user.as_ref())),
            }
        }
        let judge = settings.judge;
        let policy =
            Policy::new(judge.reissue, send.delivery, judge.max_reissues, &pool).explicit_reissue();
        let ctx = opened.desk_ctx(&calls, &pool, policy, send, password_file, rows.len())?;
        let mut reports = onboard::process_rows(&ctx, rows, common.concurrency, false).await;
        reports.extend(refused);
        reports.sort_by_key(|r| r.row);
        ids_report(&opened, "reissue", &calls.exec, &ctx.budget, reports)
    }
    .await;
    session.close(result).await
}

/// What a help-desk write opens: the state shared with a scheduled run (it does not wait for
/// one), its report and its password file, recorded as a run.
pub(crate) fn desk_spec<'a>(command: &'static str, send: &'a crate::config::Sending) -> Spec<'a> {
    Spec {
        command,
        access: Access::Shared,
        input: None,
        page: false,
        password_file: send.password_file.as_deref().map(|p| (p, false)),
        record: true,
        monitoring: None,
    }
}
