//! Whether the pool's invitation message can reach the provider: the template for the chosen
//! delivery must name both `{username}` and `{####}` (without `{####}` Cognito delivers
//! nothing), a `CustomMessage` trigger may replace it, and the validity it promises should be
//! the pool's. Pure: must not read or send anything.

use crate::cognito::{Delivery, InviteTemplate};

/// What the template check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The template lacks a placeholder: Cognito would send no usable invitation. Stops `run`.
    Missing {
        medium: &'static str,
        placeholder: &'static str,
    },
    /// A CustomMessage trigger may replace the template: what the provider receives is the
    /// trigger's, and cannot be checked here.
    Trigger,
    /// The message names a validity (in days) other than the pool's.
    Validity { says: u32, pool: u32 },
    /// The pool's custom sender Lambda composes and sends the message: the template does not
    /// describe what is sent, so nothing here can stop the run.
    CustomSender { medium: &'static str },
}

impl Finding {
    /// Whether `run` must not send invitations with this template.
    pub fn stops_the_run(&self) -> bool {
        match self {
            Finding::Missing { .. } => true,
            Finding::Trigger | Finding::Validity { .. } | Finding::CustomSender { .. } => false,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing {
                medium,
                placeholder,
            } => write!(
                f,
                "the pool's {medium} invitation template (AdminCreateUserConfig.InviteMessageTemplate) \
                 has no {placeholder}: Cognito would deliver no usable invitation; add it to the template"
            ),
            Finding::Trigger => write!(
                f,
                "a CustomMessage Lambda trigger may replace the invitation message; what providers \
                 receive is the trigger's"
            ),
            Finding::CustomSender { medium } => write!(
                f,
                "the pool's custom {medium} sender (a Lambda trigger) composes and sends the \
                 message from the code Cognito gives it: the invitation template check does not \
                 apply, and what providers receive is the Lambda's"
            ),
            Finding::Validity { says, pool } => write!(
                f,
                "the invitation message says {says} days, but temporary passwords are valid {pool} \
                 days (TemporaryPasswordValidityDays)"
            ),
        }
    }
}

/// Checks the template of `delivery` (`Suppress` sends nothing, so there is nothing to check).
pub fn check(template: &InviteTemplate, delivery: Delivery, validity_days: u32) -> Vec<Finding> {
    let (medium, message) = match delivery {
        Delivery::Email => ("email", template.email_message.as_deref()),
        Delivery::Sms => ("SMS", template.sms_message.as_deref()),
        Delivery::Suppress => return Vec::new(),
    };
    let custom = match delivery {
        Delivery::Email => template.custom_email_sender,
        Delivery::Sms => template.custom_sms_sender,
        Delivery::Suppress => false,
    };
    if custom {
        return vec![Finding::CustomSender { medium }];
    }
    let mut out = Vec::new();
    if let Some(text) = message {
        for placeholder in ["{username}", "{####}"] {
            if !text.contains(placeholder) {
                out.push(Finding::Missing {
                    medium,
                    placeholder,
                });
            }
        }
        if let Some(says) = days_named(text)
            && says != validity_days
        {
            out.push(Finding::Validity {
                says,
                pool: validity_days,
            });
        }
    }
    if template.custom_message_trigger {
        out.push(Finding::Trigger);
    }
    out
}

/// The first number of days a message names ("valid for 7 days", "7日間", "7 day").
fn days_named(text: &str) -> Option<u32> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect::<String>();
            let rest = rest.trim_start();
            if rest.starts_with("day") || rest.starts_with('日') {
                return number.parse().ok();
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(email: Option<&str>, sms: Option<&str>, trigger: bool) -> InviteTemplate {
        InviteTemplate {
            email_subject: Some("Welcome".into()),
            email_message: email.map(str::to_string),
            sms_message: sms.map(str::to_string),
            custom_message_trigger: trigger,
            custom_email_sender: false,
            custom_sms_sender: false,
        }
    }

    #[test]
    fn a_template_without_the_password_or_username_stops_the_run() {
        let t = template(Some("Hello {username}, welcome."), None, false);
        let found = check(&t, Delivery::Email, 7);
        assert_eq!(
            found,
            vec![Finding::Missing {
                medium: "email",
                placeholder: "{####}"
            }]
        );
        assert!(found[0].stops_the_run());
        assert!(found[0].to_string().contains("{####}"));
        let t = template(None, Some("Your code is {####}"), false);
        assert_eq!(
            check(&t, Delivery::Sms, 7),
            vec![Finding::Missing {
                medium: "SMS",
                placeholder: "{username}"
            }]
        );
        assert!(
            check(&t, Delivery::Email, 7).is_empty(),
            "the default email template"
        );
        assert!(
            check(&t, Delivery::Suppress, 7).is_empty(),
            "nothing is sent"
        );
    }

    #[test]
    fn a_trigger_and_another_validity_are_warnings() {
        let t = template(Some("{username} / {####}: valid for 3 days"), None, true);
        let found = check(&t, Delivery::Email, 7);
        assert_eq!(
            found,
            vec![Finding::Validity { says: 3, pool: 7 }, Finding::Trigger]
        );
        assert!(found.iter().all(|f| !f.stops_the_run()));
        let ok = template(Some("{username} {####} 有効期限は7日間です"), None, false);
        assert!(check(&ok, Delivery::Email, 7).is_empty());
        let ja = template(Some("{username} {####} 有効期限は3日間です"), None, false);
        assert_eq!(
            check(&ja, Delivery::Email, 7),
            vec![Finding::Validity { says: 3, pool: 7 }]
        );
    }

    #[test]
    fn a_custom_sender_lambda_sends_so_the_template_stops_nothing() {
        let mut t = template(Some("Hello, welcome."), Some("no placeholders"), true);
        t.custom_email_sender = true;
        let found = check(&t, Delivery::Email, 7);
        assert_eq!(found, [Finding::CustomSender { medium: "email" }]);
        assert!(!found[0].stops_the_run());
        assert!(found[0].to_string().contains("does not apply"));
        // The SMS template is still Cognito's to send, and still checked.
        assert!(
            check(&t, Delivery::Sms, 7)
                .iter()
                .any(Finding::stops_the_run)
        );
        t.custom_sms_sender = true;
        assert_eq!(
            check(&t, Delivery::Sms, 7),
            [Finding::CustomSender { medium: "SMS" }]
        );
    }
}
