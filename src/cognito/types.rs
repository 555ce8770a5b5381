//! Our domain view of Cognito: the few facts about a pool and a user the job decides on.
//! SDK types must never leave the `cognito` module; these do.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A user's account status, as Cognito reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserStatus {
    Unconfirmed,
    Confirmed,
    ForceChangePassword,
    ResetRequired,
    ExternalProvider,
    Archived,
    Compromised,
    Unknown,
    /// A status this version does not know; kept verbatim.
    Other(String),
}

impl UserStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "UNCONFIRMED" => UserStatus::Unconfirmed,
            "CONFIRMED" => UserStatus::Confirmed,
            "FORCE_CHANGE_PASSWORD" => UserStatus::ForceChangePassword,
            "RESET_REQUIRED" => UserStatus::ResetRequired,
            "EXTERNAL_PROVIDER" => UserStatus::ExternalProvider,
            "ARCHIVED" => UserStatus::Archived,
            "COMPROMISED" => UserStatus::Compromised,
            "UNKNOWN" => UserStatus::Unknown,
            other => UserStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            UserStatus::Unconfirmed => "UNCONFIRMED",
            UserStatus::Confirmed => "CONFIRMED",
            UserStatus::ForceChangePassword => "FORCE_CHANGE_PASSWORD",
            UserStatus::ResetRequired => "RESET_REQUIRED",
            UserStatus::ExternalProvider => "EXTERNAL_PROVIDER",
            UserStatus::Archived => "ARCHIVED",
            UserStatus::Compromised => "COMPROMISED",
            UserStatus::Unknown => "UNKNOWN",
            UserStatus::Other(s) => s,
        }
    }
}

impl Serialize for UserStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for UserStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(UserStatus::parse(&s))
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an invitation reaches the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Email,
    Sms,
    /// Send nothing (MessageAction=SUPPRESS); temporary passwords go to --password-file.
    Suppress,
}

impl Delivery {
    /// The name the state file and the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Email => "email",
            Delivery::Sms => "sms",
            Delivery::Suppress => "suppress",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Delivery::Email),
            "sms" => Some(Delivery::Sms),
            "suppress" => Some(Delivery::Suppress),
            _ => None,
        }
    }

    /// Whether an invitation by this delivery sends the provider a message.
    pub fn sends_message(self) -> bool {
        self != Delivery::Suppress
    }
}

/// A user as read from the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUser {
    /// Cognito's username (a UUID equal to `sub` in pools where email is the username).
    pub username: String,
    pub status: UserStatus,
    pub enabled: bool,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub sub: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    /// Every attribute Cognito returned, by name, as stored (`run --update` compares the row's
    /// cells with these).
    pub attributes: BTreeMap<String, String>,
}

pub use crate::password::PasswordPolicy;

/// How users are named in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernameMode {
    /// `UsernameAttributes` includes email: Cognito generates the username; look users up by email.
    Email,
    /// Free-form usernames, email is not an alias: the username column, or else the email.
    FreeForm,
    /// Free-form usernames with email as an alias: usernames may not look like emails, so the CSV
    /// needs a `username` column.
    FreeFormEmailAlias,
    /// Phone number is the only username attribute: not supported.
    PhoneOnly,
}

/// What the job needs to know about a schema attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaAttribute {
    /// `Mutable=false`: set at creation, never changed after.
    pub mutable: bool,
    pub required: bool,
    pub max_length: Option<usize>,
    pub developer_only: bool,
}

/// The pool settings read once per run with DescribeUserPool.
#[derive(Debug, Clone)]
pub struct PoolInfo {
    pub id: String,
    pub name: String,
    pub policy: PasswordPolicy,
    /// `TemporaryPasswordValidityDays`, with 0 read as Cognito's default of 7.
    pub temporary_password_validity_days: u32,
    pub username_mode: UsernameMode,
    pub schema: BTreeMap<String, SchemaAttribute>,
    /// `COGNITO_DEFAULT` (50 emails a day per account) or `DEVELOPER` (SES).
    pub email_sending_account: String,
    pub estimated_users: u64,
    /// `UsernameConfiguration.CaseSensitive`: usernames (and emails, where email is the
    /// username) that differ only in case are different users.
    pub case_sensitive: bool,
    /// `AdminCreateUserConfig.InviteMessageTemplate`, and whether a trigger replaces it.
    pub invitation: InviteTemplate,
    /// `EmailConfiguration.SourceArn`: the SES identity a `DEVELOPER` pool sends from.
    pub email_source_arn: Option<String>,
    /// `EmailConfiguration.From`: the sender the provider sees, where the pool sets one.
    pub email_from: Option<String>,
    /// `AccountRecoverySetting`: how a confirmed user may recover a lost password.
    pub recovery: Recovery,
    /// The pool's ARN (`arn:aws:cognito-idp:REGION:ACCOUNT:userpool/ID`): whose account it is.
    pub arn: Option<String>,
}

/// How `ForgotPassword` may reach a user of the pool (`AccountRecoverySetting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub by_email: bool,
    pub by_phone: bool,
}

impl Default for Recovery {
    /// A pool without the setting: the verified phone, else the verified email (Cognito's
    /// legacy behaviour).
    fn default() -> Self {
        Recovery {
            by_email: true,
            by_phone: true,
        }
    }
}

/// Where a pool sends its message-delivery errors (GetLogDeliveryConfiguration, event source
/// `userNotification`): the destination's ARN and the level logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryLog {
    pub destination: String,
    pub level: String,
}

/// Why SES put an address on the account's suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SuppressionReason {
    /// A message to it bounced hard: the mailbox does not exist, or refuses mail for good.
    Bounce,
    /// Its owner marked a message as spam.
    Complaint,
}

impl SuppressionReason {
    /// SES's name for it (`BOUNCE`, `COMPLAINT`).
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Bounce => "BOUNCE",
            SuppressionReason::Complaint => "COMPLAINT",
        }
    }
}

/// An address on the SES account's suppression list (sesv2 GetSuppressedDestination): SES
/// drops every message to it, while the call that sent it (Cognito's RESEND) succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Suppressed {
    pub reason: SuppressionReason,
    /// When SES last put it there (`LastUpdateTime`).
    pub since: DateTime<Utc>,
}

/// The SES account's sending limits (SES GetSendQuota), in its region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendQuota {
    pub max_24_hour_send: f64,
    pub max_send_rate: f64,
    pub sent_last_24_hours: f64,
}

impl SendQuota {
    /// Messages the account may still send in the rolling day.
    pub fn remaining(&self) -> u64 {
        (self.max_24_hour_send - self.sent_last_24_hours).max(0.0) as u64
    }

    /// SES's sandbox allows 200 a day at 1 a second, to verified addresses only.
    pub fn looks_like_sandbox(&self) -> bool {
        self.max_24_hour_send <= 200.0 && self.max_send_rate <= 1.0
    }
}

/// Who sends a pool's messages: what its daily cap, its pacing and its template are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Cognito's own email sender: 50 a day per account, from no-reply@verificationemail.com.
    CognitoEmail,
    /// The pool's SES identity (`DEVELOPER`): SES's quota and rate.
    Ses,
    /// Amazon SNS: its spend limit and sandbox.
    Sns,
    /// `LambdaConfig.CustomEmailSender`: the pool's Lambda gets the code and sends the email.
    CustomEmailLambda,
    /// `LambdaConfig.CustomSMSSender`: the pool's Lambda gets the code and sends the SMS.
    CustomSmsLambda,
    /// `--delivery suppress`: the passwords go to the password file.
    Nobody,
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sender::CognitoEmail => {
                "Cognito's own email sender (no-reply@verificationemail.com, 50 emails a day per account)"
            }
            Sender::Ses => "Amazon SES, from the pool's identity (EmailConfiguration.SourceArn)",
            Sender::Sns => "Amazon SNS (SMS)",
            Sender::CustomEmailLambda => {
                "the pool's custom email sender, a Lambda (LambdaConfig.CustomEmailSender)"
            }
            Sender::CustomSmsLambda => {
                "the pool's custom SMS sender, a Lambda (LambdaConfig.CustomSMSSender)"
            }
            Sender::Nobody => "nobody: the passwords go to the password file",
        })
    }
}

/// The pool's invitation message. `None`: Cognito's default, which names both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteTemplate {
    pub email_subject: Option<String>,
    pub email_message: Option<String>,
    pub sms_message: Option<String>,
    /// A `CustomMessage` Lambda trigger, which may replace the message.
    pub custom_message_trigger: bool,
    /// `LambdaConfig.CustomEmailSender`: a Lambda sends the email, not Cognito or SES.
    pub custom_email_sender: bool,
    /// `LambdaConfig.CustomSMSSender`: a Lambda sends the SMS, not SNS.
    pub custom_sms_sender: bool,
}

/// Cognito's standard attributes: every pool has them, whatever its `DescribeUserPool` lists
/// (an emulator lists only the custom ones for a pool created with a `Schema`).
pub const STANDARD_ATTRIBUTES: [&str; 20] = [
    "address",
    "birthdate",
    "email",
    "email_verified",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "phone_number",
    "phone_number_verified",
    "picture",
    "preferred_username",
    "profile",
    "sub",
    "updated_at",
    "website",
    "zoneinfo",
];

impl PoolInfo {
    /// Whether the pool sends email with Cognito's own sender, capped at 50 a day per account.
    pub fn uses_cognito_email(&self) -> bool {
        self.sender_of(Delivery::Email) == Sender::CognitoEmail
    }

    /// Who sends the pool's messages by `delivery`.
    pub fn sender_of(&self, delivery: Delivery) -> Sender {
        match delivery {
            Delivery::Suppress => Sender::Nobody,
            Delivery::Email if self.invitation.custom_email_sender => Sender::CustomEmailLambda,
            Delivery::Email if self.email_sending_account == "DEVELOPER" => Sender::Ses,
            Delivery::Email => Sender::CognitoEmail,
            Delivery::Sms if self.invitation.custom_sms_sender => Sender::CustomSmsLambda,
            Delivery::Sms => Sender::Sns,
        }
    }

    /// The AWS account the pool belongs to, from its ARN.
    pub fn account(&self) -> Option<&str> {
        self.arn
            .as_deref()?
            .split(':')
            .nth(4)
            .filter(|a| !a.is_empty())
    }

    /// What an invitation's message by `delivery` counts against: Cognito's own email sender
    /// of the pool's account (its 50 a day are shared by every pool of the account), SES of
    /// the account, or SMS of the account. `None`: no message.
    pub fn sender(&self, delivery: Delivery) -> Option<String> {
        let account = self.account().unwrap_or("unknown-account");
        match delivery {
            Delivery::Suppress => None,
            Delivery::Email | Delivery::Sms => Some(match self.sender_of(delivery) {
                Sender::CognitoEmail => format!("email:cognito:{account}"),
                // The pool's own Lambda: what it sends through is its own, so it counts apart.
                Sender::CustomEmailLambda => format!("email:lambda:{}", self.id),
                Sender::CustomSmsLambda => format!("sms:lambda:{}", self.id),
                Sender::Ses | Sender::Nobody => format!("email:ses:{account}"),
                Sender::Sns => format!("sms:{account}"),
            }),
        }
    }

    /// The region of the SES identity a `DEVELOPER` pool sends from
    /// (`arn:aws:ses:REGION:ACCOUNT:identity/...`).
    pub fn ses_region(&self) -> Option<&str> {
        let arn = self.email_source_arn.as_deref()?;
        let region = arn.split(':').nth(3)?;
        (self.sender_of(Delivery::Email) == Sender::Ses && !region.is_empty()).then_some(region)
    }

    /// Attribute names the job may write at creation: in the schema, not developer-only, and not
    /// the ones it manages itself.
    pub fn writable_attributes(&self) -> BTreeSet<String> {
        let listed = self
            .schema
            .iter()
            .filter(|(_, a)| !a.developer_only)
            .map(|(name, _)| name.as_str());
        STANDARD_ATTRIBUTES
            .into_iter()
            .chain(listed)
            .filter(|name| {
                !matches!(
                    *name,
                    "sub" | "email_verified" | "phone_number_verified" | "updated_at"
                )
            })
            .map(str::to_string)
            .collect()
    }
}

/// One page of a listing, and the token for the next (absent on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One page of users.
pub type UserPage = Page<RemoteUser>;

/// One page of names (groups, or group members).
pub type NamePage = Page<String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(schema: &[(&str, bool)]) -> PoolInfo {
        PoolInfo {
            id: "p".into(),
            name: "p".into(),
            policy: PasswordPolicy::default(),
            temporary_password_validity_days: 7,
            username_mode: UsernameMode::FreeForm,
            schema: schema
                .iter()
                .map(|(n, dev)| {
                    (
                        n.to_string(),
                        SchemaAttribute {
                            mutable: true,
                            required: false,
                            max_length: None,
                            developer_only: *dev,
                        },
                    )
                })
                .collect(),
            email_sending_account: "COGNITO_DEFAULT".into(),
            estimated_users: 0,
            case_sensitive: true,
            invitation: InviteTemplate::default(),
            email_source_arn: None,
            email_from: None,
            recovery: Recovery::default(),
            arn: None,
        }
    }

    #[test]
    fn the_ses_region_comes_from_the_source_arn_of_a_developer_pool() {
        let mut p = pool(&[]);
        p.email_source_arn = Some("arn:aws:ses:us-west-2:123456789012:identity/a@b.jp".into());
        assert_eq!(
            p.ses_region(),
            None,
            "COGNITO_DEFAULT sends through Cognito"
        );
        p.email_sending_account = "DEVELOPER".into();
        assert_eq!(p.ses_region(), Some("us-west-2"));
        let q = SendQuota {
            max_24_hour_send: 200.0,
            max_send_rate: 1.0,
            sent_last_24_hours: 150.0,
        };
        assert_eq!(q.remaining(), 50);
        assert!(q.looks_like_sandbox());
    }

    #[test]
    fn standard_attributes_are_writable_even_when_the_pool_lists_only_custom_ones() {
        let w = pool(&[("custom:org", false), ("custom:secret", true)]).writable_attributes();
        for name in ["name", "phone_number", "given_name", "email", "custom:org"] {
            assert!(w.contains(name), "{name}");
        }
        for name in [
            "sub",
            "email_verified",
            "updated_at",
            "custom:secret",
            "custom:nope",
        ] {
            assert!(!w.contains(name), "{name}");
        }
    }
}
