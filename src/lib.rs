//! cognito-onboard: onboard a cohort of data providers from a CSV into an Amazon Cognito user
//! pool, and keep onboarding them until every one has set a real password.
//!
//! The shape: read (`input`), resolve (`cognito`), plan (`plan`, pure), execute (`executor`,
//! `limiter`, `onboard`), record (`state`), report (`report`). `app` runs the steps in order.

pub mod app;
pub mod cli;
pub mod cognito;
pub mod config;
pub mod error;
pub mod executor;
pub mod input;
pub mod limiter;
pub mod logging;
pub mod onboard;
pub mod password;
pub mod plan;
pub mod report;
pub mod state;
pub mod status;
