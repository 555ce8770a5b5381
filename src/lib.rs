//! cognito-onboard: onboard a cohort of data providers from a CSV into an Amazon Cognito user
//! pool, and keep onboarding them until every one has set a real password.
//!
//! The shape: read (`input`), resolve (`lookup` over `calls`, the `cognito` adapter), plan
//! (`plan`, pure), execute (`onboard`, through `executor` and `limiter`), record (`state`),
//! report (`report`: its vocabulary below the writers, in words from `report::wording`; `standing`). The help desk: `diagnosis`
//! (pure), `help` (its reads), `handover` (closing the loop). Each command is a file of
//! `commands`, over the lifecycle `session` shares; `app` resolves the settings (`config`) and
//! calls it.

/// Checks at compile time that `$enum::ALL` lists every variant but the `N` that carry data
/// (their own lists cover them): its length is strum's variant count less `N`. With a unit test
/// beside the enum that no element is listed twice, a new variant cannot be left out of a list
/// that tests or the IAM policy samples rely on. (Field-less enums derive their `ALL` instead,
/// with strum's `VariantArray`.)
#[macro_export]
macro_rules! every_variant {
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
pub mod monitor;
pub mod offboard;
pub mod onboard;
pub mod password;
pub mod password_file;
pub mod plan;
pub mod report;
pub mod scratch;
pub mod session;
pub mod standing;
pub mod state;
pub mod status;
pub mod suppression;
