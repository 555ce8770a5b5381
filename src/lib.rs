//! cognito-onboard: onboard a cohort of data providers from a CSV into an Amazon Cognito user
//! pool, and keep onboarding them until every one has set a real password.
//!
//! The shape: read (`input`), resolve (`lookup` over `calls`, the `cognito` adapter), plan
//! (`plan`, pure), execute (`onboard`, through `executor` and `limiter`), record (`state`),
//! report (`report`: its vocabulary below the writers, in words from `report::wording`; `standing`). The help desk: `diagnosis`
//! (pure), `help` (its reads), `handover` (closing the loop). Each command is a file of
//! `commands`, over the lifecycle `session` shares; `app` resolves the settings (`config`) and
//! calls it.

/// Checks at compile time that `$enum::ALL` lists every variant of a field-less enum exactly once
/// (its length is strum's count, and no variant is listed twice), so that a new variant cannot
/// be left out of a list that tests, the IAM policy samples or the reports rely on. With
/// `except N`, the list leaves out N variants that carry data (their own lists cover them), and
/// a unit test beside the enum checks that no element is listed twice.
#[macro_export]
macro_rules! every_variant {
    ($enum:ident) => {
        const _: () = {
            let all = $enum::ALL;
            assert!(
                all.len() == <$enum as strum::EnumCount>::COUNT,
                concat!(stringify!($enum), "::ALL must list every variant")
            );
            let mut i = 0;
            while i < all.len() {
                let mut j = i + 1;
                while j < all.len() {
                    assert!(
                        all[i] as usize != all[j] as usize,
                        concat!(stringify!($enum), "::ALL lists a variant twice")
                    );
                    j += 1;
                }
                i += 1;
            }
        };
    };
    ($enum:ident except $n:literal) => {
        const _: () = assert!(
            $enum::ALL.len() + $n == <$enum as strum::EnumCount>::COUNT,
            concat!(
                stringify!($enum),
                "::ALL must list every variant but the excepted"
            )
        );
    };
}

pub mod app;
pub mod budget;
pub mod calls;
pub mod cli;
pub mod cognito;
pub mod cohort;
pub mod commands;
pub mod config;
pub mod diagnosis;
pub mod error;
pub mod executor;
pub mod handover;
pub mod help;
pub mod input;
pub mod invite;
pub mod limiter;
pub mod logging;
pub mod lookup;
pub mod manual;
pub mod onboard;
pub mod password;
pub mod password_file;
pub mod plan;
pub mod report;
pub mod session;
pub mod standing;
pub mod state;
pub mod status;
