//! The run's figures as one CloudWatch Embedded Metric Format record on stderr (`--emf`), for
//! containers whose stderr goes to CloudWatch Logs: namespace [`NAMESPACE`], one dimension set
//! (`UserPoolId`, `Command`), the same figures as the metrics file. Must print nothing but the
//! one JSON line, and never a name, an email or a password.

use serde_json::{Map, Value, json};

use super::{End, Family, seconds};

/// The CloudWatch namespace the metrics land in.
pub const NAMESPACE: &str = "CognitoOnboard";

/// The dimensions every metric carries.
pub const DIMENSIONS: [&str; 2] = ["UserPoolId", "Command"];

/// The record, as one line of JSON.
pub fn record(end: &End<'_>) -> String {
    let mut root = Map::new();
    let mut metrics = Vec::new();
    for (name, unit, value) in figures(end) {
        metrics.push(json!({ "Name": name, "Unit": unit }));
        root.insert(name, value);
    }
    root.insert("UserPoolId".into(), end.pool.into());
    root.insert("Command".into(), end.command.into());
    root.insert("RunId".into(), end.run_id.into());
    // The specification allows at most 100 metrics a directive: the figures are split.
    let directives: Vec<Value> = metrics
        .chunks(100)
        .map(
            |chunk| json!({ "Namespace": NAMESPACE, "Dimensions": [DIMENSIONS], "Metrics": chunk }),
        )
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

/// Each metric: its name, its CloudWatch unit, its value.
fn figures(end: &End<'_>) -> Vec<(String, &'static str, Value)> {
    let mut out = vec![
        ("ExitCode".to_string(), "None", end.exit_code.into()),
        // CloudWatch keeps no last success: an alarm on Succeeded summed over two periods,
        // with missing data treated as breaching, is the missing-run alert.
        (
            "Succeeded".into(),
            "Count",
            u8::from(end.exit_code == 0).into(),
        ),
        (
            "DurationSeconds".into(),
            "Seconds",
            end.duration_seconds().into(),
        ),
    ];
    let Some(f) = end.figures else {
        return out;
    };
    for figure in f.each() {
        let part = figure.part.map(pascal).unwrap_or_default();
        let (name, unit, value) = match figure.family {
            Family::Rows => (format!("Rows{part}"), "Count", number(figure.value)),
            Family::Deferred => (format!("Deferred{part}"), "Count", number(figure.value)),
            // A time is no metric: how long until then is.
            Family::BudgetFrees if figure.value > 0.0 => {
                let secs = (figure.value - seconds(end.finished_at)).max(0.0);
                ("EmailBudgetFreesInSeconds".into(), "Seconds", secs.into())
            }
            Family::BudgetFrees => continue,
            Family::Providers => (format!("Providers{part}"), "Count", number(figure.value)),
            Family::Calls => (format!("Calls{part}"), "Count", number(figure.value)),
            Family::Throttles => (format!("Throttles{part}"), "Count", number(figure.value)),
            Family::BudgetBlocked => (
                "BudgetBlockedSeconds".into(),
                "Seconds",
                number(figure.value),
            ),
            Family::Expired => ("ExpiredProviders".into(), "Count", number(figure.value)),
            Family::ExpiredRuns => ("ExpiredPendingRuns".into(), "Count", number(figure.value)),
        };
        out.push((name, unit, value));
    }
    out
}

/// Prints the record on stderr, on a line of its own.
pub fn emit(end: &End<'_>) {
    eprintln!("{}", record(end));
}

/// A count as an integer, a measure as it is.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        (v as i64).into()
    } else {
        v.into()
    }
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
