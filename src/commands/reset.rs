//! `reset`: for a confirmed provider who lost the password, Cognito's code to the verified
//! address, or with `--temporary` a new temporary password to the password file. Anyone else,
//! and anyone a code could never reach, is refused with the reason. Must not carry a row out
//! itself (`onboard`).

use crate::config::{Common, DeskSettings};
use crate::error::{Ending, Error};
use crate::help;
use crate::plan::Policy;
use crate::report::{self, RowReport};
use crate::session::{Session, ids_report, open_pool};

use super::reissue::desk_spec;

pub(crate) async fn run(common: &Common, settings: &DeskSettings) -> Result<Ending, Error> {
    let send = &settings.send;
    let (mut session, ()) = Session::open(common, desk_spec("reset", send), || Ok(())).await?;
    let password_file = session.take_password_file();
    let opened = session.opened();
    let result = async {
        let (calls, pool) = open_pool(common, opened.pool_id).await?;
        let known = opened.state.known(&pool.id)?;
        let judge = settings.judge;
        let policy = Policy::new(judge.reissue, send.delivery, judge.max_reissues, &pool);
        let ctx = opened.desk_ctx(
            &calls,
            &pool,
            policy,
            send,
            password_file,
            settings.ids.len(),
        )?;
        let mut reports = Vec::new();
        for (line, typed) in (1..).zip(&settings.ids) {
            let id = match help::checked_id(typed) {
                Ok(id) => id,
                Err(why) => {
                    reports.push(help::invalid_id(line, typed, &why));
                    continue;
                }
            };
            let (user, key) = help::find(&calls, &known, &id).await?;
            reports.push(match user {
                Some(user) => {
                    // The state's key, so that what the reset records (a `--temporary`
                    // intent) is found by the runs that follow.
                    let r = RowReport::new(
                        line,
                        key.unwrap_or_else(|| id.clone()),
                        user.email.clone(),
                        report::Outcome::Skipped,
                    );
                    ctx.reset(r, &user, settings.temporary).await
                }
                None => help::refused(line, &id, None),
            });
        }
        ids_report(&opened, "reset", &calls.exec, &ctx.budget, reports)
    }
    .await;
    session.close(result).await
}
