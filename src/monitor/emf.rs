//! The run's figures as one CloudWatch Embedded Metric Format record on stderr (`--emf`), for
//! containers whose stderr goes to CloudWatch Logs: namespace [`NAMESPACE`], one dimension set
//! (`UserPoolId`, `Command`), the same figures as the metrics file. Must print nothing but the
//! one JSON line, and never a name, an email or a password.

use serde_json::{Map, Value, json};

use super::End;

/// The CloudWatch namespace the metrics land in.
pub const NAMESPACE: &str = "CognitoOnboard";

/// The dimensions every metric carries.
pub const DIMENSIONS: [&str; 2] = ["UserPoolId", "Command"];

/// The record, as one line of JSON.
pub fn record(end: &End<'_>) -> String {
    let mut root = Map::new();
    let mut metrics = Vec::new();
    let mut put = |root: &mut Map<String, Value>, name: String, unit: &str, value: Value| {
        metrics.push(json!({ "Name": name, "Unit": unit }));
        root.insert(name, value);
    };
    put(&mut root, "ExitCode".into(), "None", end.exit_code.into());
    // CloudWatch keeps no last success: an alarm on Succeeded summed over two periods, with
    // missing data treated as breaching, is the missing-run alert.
    put(
        &mut root,
        "Succeeded".into(),
        "Count",
        u8::from(end.exit_code == 0).into(),
    );
    put(
        &mut root,
        "DurationSeconds".into(),
        "Seconds",
        end.duration_seconds().into(),
    );
    if let Some(f) = end.figures {
        for (outcome, n) in &f.rows {
            put(
                &mut root,
                format!("Rows{}", pascal(outcome)),
                "Count",
                (*n).into(),
            );
        }
        for (cause, n) in &f.deferred {
            put(
                &mut root,
                format!("Deferred{}", pascal(cause)),
                "Count",
                (*n).into(),
            );
        }
        if let Some(at) = f.email_budget_frees_at {
            let secs = (at - end.finished_at).num_seconds().max(0);
            put(
                &mut root,
                "EmailBudgetFreesInSeconds".into(),
                "Seconds",
                secs.into(),
            );
        }
        if let Some(funnel) = &f.funnel {
            for (stage, n) in [
                ("Invited", funnel.invited),
                ("Confirmed", funnel.confirmed),
                ("Pending", funnel.pending),
                ("Expired", funnel.expired),
                ("Attention", funnel.attention),
            ] {
                put(&mut root, format!("Providers{stage}"), "Count", n.into());
            }
        }
        for (category, n) in &f.calls {
            put(&mut root, format!("Calls{category}"), "Count", (*n).into());
            let throttled = f.throttles.get(category).copied().unwrap_or(0);
            put(
                &mut root,
                format!("Throttles{category}"),
                "Count",
                throttled.into(),
            );
        }
        if let Some(stall) = &f.stall {
            put(
                &mut root,
                "BudgetBlockedSeconds".into(),
                "Seconds",
                stall.budget_blocked_seconds.into(),
            );
            put(
                &mut root,
                "ExpiredProviders".into(),
                "Count",
                stall.expired.into(),
            );
            put(
                &mut root,
                "ExpiredPendingRuns".into(),
                "Count",
                stall.expired_for_runs.into(),
            );
        }
    }
    root.insert("UserPoolId".into(), end.pool.into());
    root.insert("Command".into(), end.command.into());
    root.insert("RunId".into(), end.run_id.into());
    // The specification allows at most 100 metrics a directive: the figures are split.
    let directives: Vec<Value> = metrics
        .chunks(100)
        .map(|chunk| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": [DIMENSIONS],
                "Metrics": chunk,
            })
        })
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": end.finished_at.timestamp_millis(),
            "CloudWatchMetrics": directives,
        }),
    );
    Value::Object(root).to_string()
}

/// Prints the record on stderr, on a line of its own.
pub fn emit(end: &End<'_>) {
    eprintln!("{}", record(end));
}

/// `message_limit` → `MessageLimit`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pascal_case() {
        assert_eq!(pascal("message_limit"), "MessageLimit");
        assert_eq!(pascal("created"), "Created");
    }
}
