//! The Cognito adapter: our domain types in, our domain types out. [`Directory`] is the seam: one
//! method per operation, one attempt per call, failures as [`Fault`]s that name no operation.
//! Must not retry, pace, classify or decide (that is `calls` and `executor`); SDK types never
//! leave here.

mod error;
pub mod limits;
mod types;

#[cfg(test)]
pub mod memory;

pub use error::{CallError, ErrorClass, Fault, FaultKind, HttpStatus, classify, fault_of};
pub use types::*;

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::ProvideCredentials;
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, DeliveryMediumType, LimitClass, LimitDefinitionType, MessageActionType,
    RecoveryOptionNameType, UserType, UsernameAttributeType,
};
use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::limiter::Category;
use crate::password::TempPassword;
use error::from_sdk;

/// How to reach Cognito.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// Limit on one attempt of one call; the retry loop decides what happens next.
    pub attempt_timeout: Duration,
}

/// A user to create.
pub struct NewUser<'a> {
    /// The name passed to AdminCreateUser (the email in pools where email is the username).
    pub username: &'a str,
    pub attributes: &'a [(String, String)],
    pub password: &'a TempPassword,
    pub delivery: Delivery,
}

/// The Cognito operations the job uses, one attempt each. Implemented by [`Cognito`] (the AWS
/// SDK) and, in unit tests, by an in-memory pool. `calls::Calls` binds each method to its
/// [`Op`](crate::limiter::Op) and runs it through the executor.
pub trait Directory: Send + Sync + 'static {
    fn pool_id(&self) -> &str;
    /// DescribeUserPool, reduced to what the job decides on.
    fn describe_pool(&self) -> impl Future<Output = Result<PoolInfo, Fault>> + Send;
    /// The rate Cognito enforces for a category on this account (GetProvisionedLimit).
    fn provisioned_limit(
        &self,
        category: Category,
    ) -> impl Future<Output = Result<f64, Fault>> + Send;
    fn list_groups(
        &self,
        next: Option<String>,
    ) -> impl Future<Output = Result<NamePage, Fault>> + Send;
    fn list_users_in_group(
        &self,
        group: &str,
        next: Option<String>,
    ) -> impl Future<Output = Result<NamePage, Fault>> + Send;
    /// One page of ListUsers (60 users), optionally filtered (`cognito:user_status = "..."`,
    /// `sub ^= "a"`, ...).
    fn list_users(
        &self,
        filter: Option<&str>,
        next: Option<String>,
    ) -> impl Future<Output = Result<UserPage, Fault>> + Send;
    /// AdminGetUser; `Ok(None)` when the user does not exist.
    fn get_user(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<RemoteUser>, Fault>> + Send;
    /// AdminCreateUser with `email_verified=true`, so the provider can use self-service
    /// recovery later.
    fn create_user(
        &self,
        user: &NewUser<'_>,
    ) -> impl Future<Output = Result<RemoteUser, Fault>> + Send;
    /// AdminCreateUser with MessageAction=RESEND: a new invitation with a new temporary password.
    fn resend_invitation(
        &self,
        username: &str,
        password: &TempPassword,
        delivery: Delivery,
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminSetUserPassword with Permanent=false: a new temporary password, no message.
    fn set_temporary_password(
        &self,
        username: &str,
        password: &TempPassword,
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminUpdateUserAttributes with these values, in one call.
    fn update_attributes(
        &self,
        username: &str,
        attributes: &[(String, String)],
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminDeleteUserAttributes of these names, in one call.
    fn delete_attributes(
        &self,
        username: &str,
        names: &[String],
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    fn remove_from_group(
        &self,
        username: &str,
        group: &str,
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    fn add_to_group(
        &self,
        username: &str,
        group: &str,
    ) -> impl Future<Output = Result<(), Fault>> + Send;
    /// SES GetSendQuota in `region` (where a `DEVELOPER` pool's SES identity lives).
    fn send_quota(&self, region: &str) -> impl Future<Output = Result<SendQuota, Fault>> + Send;
    /// AdminResetUserPassword: Cognito sends a confirmed user a code; the user is
    /// `RESET_REQUIRED` until they use it.
    fn reset_password(&self, username: &str) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminDisableUser: the user can no longer sign in and its tokens are revoked; it stays in
    /// the pool, `Enabled=false`. Disabling a disabled user changes nothing.
    fn disable_user(&self, username: &str) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminEnableUser: a disabled user may sign in again (`Enabled=true`).
    fn enable_user(&self, username: &str) -> impl Future<Output = Result<(), Fault>> + Send;
    /// AdminDeleteUser: the user is gone for good (a user created again gets a new `sub`).
    fn delete_user(&self, username: &str) -> impl Future<Output = Result<(), Fault>> + Send;
    /// GetLogDeliveryConfiguration: where the pool logs its message-delivery errors, if it does.
    fn delivery_log(&self) -> impl Future<Output = Result<Option<DeliveryLog>, Fault>> + Send;
    /// SES v2 GetSuppressedDestination in `region` (where a `DEVELOPER` pool's SES identity
    /// lives): `Ok(None)` when `email` is not on the account's suppression list.
    fn suppressed(
        &self,
        region: &str,
        email: &str,
    ) -> impl Future<Output = Result<Option<Suppressed>, Fault>> + Send;
}

/// A bound client for one pool.
#[derive(Clone)]
pub struct Cognito {
    client: Client,
    pool_id: String,
    /// For the SES client, built in the SES identity's region when needed.
    config: aws_config::SdkConfig,
}

/// The region in a pool id ("eu-west-1_AbCd" → "eu-west-1").
pub fn region_of_pool(pool_id: &str) -> Option<&str> {
    let (region, rest) = pool_id.split_once('_')?;
    (!region.is_empty() && !rest.is_empty() && region.contains('-')).then_some(region)
}

fn date(d: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    let d = d?;
    DateTime::from_timestamp(d.secs(), d.subsec_nanos())
}

fn remote_user(
    username: &str,
    attributes: &[AttributeType],
    status: Option<&str>,
    enabled: bool,
    modified: Option<&aws_smithy_types::DateTime>,
    created: Option<&aws_smithy_types::DateTime>,
) -> RemoteUser {
    let attr = |name: &str| {
        attributes
            .iter()
            .find(|a| a.name() == name)
            .and_then(|a| a.value())
    };
    RemoteUser {
        username: username.to_string(),
        status: UserStatus::parse(status.unwrap_or("UNKNOWN")),
        enabled,
        // As stored: in a case-sensitive pool `Taro@Example.jp` is not `taro@example.jp`.
        email: attr("email").map(str::to_string),
        email_verified: attr("email_verified") == Some("true"),
        phone: attr("phone_number").map(str::to_string),
        phone_verified: attr("phone_number_verified") == Some("true"),
        sub: attr("sub").map(str::to_string),
        last_modified: date(modified),
        created: date(created),
        attributes: attributes
            .iter()
            .filter_map(|a| Some((a.name().to_string(), a.value()?.to_string())))
            .collect(),
    }
}

fn from_user_type(u: &UserType) -> RemoteUser {
    remote_user(
        u.username().unwrap_or_default(),
        u.attributes(),
        u.user_status().map(|s| s.as_str()),
        u.enabled(),
        u.user_last_modified_date(),
        u.user_create_date(),
    )
}

/// An attribute; `None` only if the SDK refuses a name, which it does only for an empty one.
fn attribute(name: &str, value: &str) -> Option<AttributeType> {
    AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .ok()
}

impl Cognito {
    /// Builds the client with SDK retries off (the job's own retry loop takes a rate-limiter
    /// permit on every attempt; SDK retries would bypass it) and checks that credentials resolve.
    /// Stalled-stream protection is off too: every attempt has its own timeout, and watching
    /// the throughput of bodies of a few hundred bytes cost about 5% of the tool's CPU.
    pub async fn connect(conn: &Connection, pool_id: &str) -> Result<Cognito, Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(conn.attempt_timeout)
                    .connect_timeout(Duration::from_secs(5).min(conn.attempt_timeout))
                    .build(),
            );
        if let Some(profile) = &conn.profile {
            loader = loader.profile_name(profile);
        }
        let region = conn
            .region
            .clone()
            .or_else(|| region_of_pool(pool_id).map(str::to_string));
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = &conn.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::Config(
                "no AWS Region: pass --region, set AWS_REGION, or use a pool id like eu-west-1_Abc"
                    .into(),
            ));
        }
        let provider = config.credentials_provider().ok_or_else(|| {
            Error::Credentials("no credentials provider is configured".to_string())
        })?;
        if let Err(e) = provider.provide_credentials().await {
            return Err(Error::Credentials(format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )));
        }
        Ok(Cognito {
            client: Client::new(&config),
            pool_id: pool_id.to_string(),
            config,
        })
    }
}

impl Directory for Cognito {
    fn pool_id(&self) -> &str {
        &self.pool_id
    }

    async fn describe_pool(&self) -> Result<PoolInfo, Fault> {
        let out = self
            .client
            .describe_user_pool()
            .user_pool_id(&self.pool_id)
            .send()
            .await
            .map_err(from_sdk)?;
        let pool = out
            .user_pool()
            .ok_or_else(|| Fault::local("the answer had no user pool"))?;
        let pp = pool.policies().and_then(|p| p.password_policy());
        let policy = match pp {
            Some(pp) => PasswordPolicy {
                minimum_length: pp
                    .minimum_length()
                    .map(|n| n.clamp(6, 99) as usize)
                    .unwrap_or(8),
                require_uppercase: pp.require_uppercase(),
                require_lowercase: pp.require_lowercase(),
                require_numbers: pp.require_numbers(),
                require_symbols: pp.require_symbols(),
            },
            None => PasswordPolicy::default(),
        };
        let validity = pp
            .map(|pp| pp.temporary_password_validity_days())
            .filter(|d| *d > 0)
            .unwrap_or(7) as u32;
        let email_is_username = pool
            .username_attributes()
            .contains(&UsernameAttributeType::Email);
        let phone_is_username = pool
            .username_attributes()
            .contains(&UsernameAttributeType::PhoneNumber);
        let email_alias = pool
            .alias_attributes()
            .iter()
            .any(|a| a.as_str() == "email");
        let username_mode = if email_is_username {
            UsernameMode::Email
        } else if phone_is_username {
            UsernameMode::PhoneOnly
        } else if email_alias {
            UsernameMode::FreeFormEmailAlias
        } else {
            UsernameMode::FreeForm
        };
        let schema = pool
            .schema_attributes()
            .iter()
            .filter_map(|a| {
                let name = a.name()?.to_string();
                Some((
                    name,
                    SchemaAttribute {
                        mutable: a.mutable().unwrap_or(true),
                        required: a.required().unwrap_or(false),
                        max_length: a
                            .string_attribute_constraints()
                            .and_then(|c| c.max_length())
                            .and_then(|m| m.parse().ok()),
                        developer_only: a.developer_only_attribute().unwrap_or(false),
                    },
                ))
            })
            .collect();
        Ok(PoolInfo {
            id: pool.id().unwrap_or(&self.pool_id).to_string(),
            name: pool.name().unwrap_or_default().to_string(),
            policy,
            temporary_password_validity_days: validity,
            username_mode,
            schema,
            email_sending_account: pool
                .email_configuration()
                .and_then(|e| e.email_sending_account())
                .map(|a| a.as_str().to_string())
                .unwrap_or_else(|| "COGNITO_DEFAULT".to_string()),
            estimated_users: pool.estimated_number_of_users().max(0) as u64,
            // The API's default when a pool was created without it (the console's is false).
            case_sensitive: pool
                .username_configuration()
                .map(|c| c.case_sensitive())
                .unwrap_or(true),
            recovery: match pool.account_recovery_setting() {
                Some(setting) => {
                    let has = |n: RecoveryOptionNameType| {
                        setting.recovery_mechanisms().iter().any(|m| *m.name() == n)
                    };
                    Recovery {
                        by_email: has(RecoveryOptionNameType::VerifiedEmail),
                        by_phone: has(RecoveryOptionNameType::VerifiedPhoneNumber),
                    }
                }
                None => Recovery::default(),
            },
            arn: pool.arn().map(str::to_string),
            email_source_arn: pool
                .email_configuration()
                .and_then(|e| e.source_arn())
                .map(str::to_string),
            email_from: pool
                .email_configuration()
                .and_then(|e| e.from())
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            invitation: {
                let t = pool
                    .admin_create_user_config()
                    .and_then(|c| c.invite_message_template());
                let own = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
                InviteTemplate {
                    email_subject: own(t.and_then(|t| t.email_subject())),
                    email_message: own(t.and_then(|t| t.email_message())),
                    sms_message: own(t.and_then(|t| t.sms_message())),
                    custom_message_trigger: pool
                        .lambda_config()
                        .and_then(|l| l.custom_message())
                        .is_some_and(|arn| !arn.is_empty()),
                    custom_email_sender: pool
                        .lambda_config()
                        .and_then(|l| l.custom_email_sender())
                        .is_some_and(|c| !c.lambda_arn().is_empty()),
                    custom_sms_sender: pool
                        .lambda_config()
                        .and_then(|l| l.custom_sms_sender())
                        .is_some_and(|c| !c.lambda_arn().is_empty()),
                }
            },
        })
    }

    async fn provisioned_limit(&self, category: Category) -> Result<f64, Fault> {
        let definition = LimitDefinitionType::builder()
            .limit_class(LimitClass::ApiCategory)
            .attributes("Category", category.name())
            .build()
            .map_err(|e| Fault::local(e.to_string()))?;
        let out = self
            .client
            .get_provisioned_limit()
            .limit_definition(definition)
            .send()
            .await
            .map_err(from_sdk)?;
        match out.limit().map(|l| l.provisioned_limit_value()) {
            Some(v) if v > 0 => Ok(v as f64),
            _ => Err(Fault::local("no provisioned value in the answer")),
        }
    }

    async fn list_groups(&self, next: Option<String>) -> Result<NamePage, Fault> {
        let out = self
            .client
            .list_groups()
            .user_pool_id(&self.pool_id)
            .limit(60)
            .set_next_token(next)
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(Page {
            items: out
                .groups()
                .iter()
                .filter_map(|g| g.group_name().map(str::to_string))
                .collect(),
            next: out.next_token().map(str::to_string),
        })
    }

    async fn list_users_in_group(
        &self,
        group: &str,
        next: Option<String>,
    ) -> Result<NamePage, Fault> {
        let out = self
            .client
            .list_users_in_group()
            .user_pool_id(&self.pool_id)
            .group_name(group)
            .limit(60)
            .set_next_token(next)
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(Page {
            items: out
                .users()
                .iter()
                .filter_map(|u| u.username().map(str::to_string))
                .collect(),
            next: out.next_token().map(str::to_string),
        })
    }

    async fn list_users(
        &self,
        filter: Option<&str>,
        next: Option<String>,
    ) -> Result<UserPage, Fault> {
        let out = self
            .client
            .list_users()
            .user_pool_id(&self.pool_id)
            .limit(60)
            .set_filter(filter.map(str::to_string))
            .set_pagination_token(next)
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(Page {
            items: out.users().iter().map(from_user_type).collect(),
            next: out.pagination_token().map(str::to_string),
        })
    }

    async fn get_user(&self, username: &str) -> Result<Option<RemoteUser>, Fault> {
        match self
            .client
            .admin_get_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(out) => Ok(Some(remote_user(
                out.username(),
                out.user_attributes(),
                out.user_status().map(|s| s.as_str()),
                out.enabled(),
                out.user_last_modified_date(),
                out.user_create_date(),
            ))),
            Err(e) => match from_sdk(e) {
                f if f.code.as_deref() == Some("UserNotFoundException") => Ok(None),
                f => Err(f),
            },
        }
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<RemoteUser, Fault> {
        let mut attributes: Vec<AttributeType> = user
            .attributes
            .iter()
            .filter_map(|(n, v)| attribute(n, v))
            .collect();
        attributes.extend(attribute("email_verified", "true"));
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(user.username)
            .set_user_attributes(Some(attributes))
            .temporary_password(user.password.expose());
        req = match user.delivery {
            Delivery::Email => req.desired_delivery_mediums(DeliveryMediumType::Email),
            Delivery::Sms => req.desired_delivery_mediums(DeliveryMediumType::Sms),
            Delivery::Suppress => req.message_action(MessageActionType::Suppress),
        };
        let out = req.send().await.map_err(from_sdk)?;
        Ok(out
            .user()
            .map(from_user_type)
            .unwrap_or_else(|| RemoteUser {
                username: user.username.to_string(),
                status: UserStatus::ForceChangePassword,
                enabled: true,
                email: None,
                email_verified: true,
                phone: None,
                phone_verified: false,
                sub: None,
                last_modified: None,
                created: None,
                attributes: Default::default(),
            }))
    }

    async fn resend_invitation(
        &self,
        username: &str,
        password: &TempPassword,
        delivery: Delivery,
    ) -> Result<(), Fault> {
        let mut req = self
            .client
            .admin_create_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .message_action(MessageActionType::Resend)
            .temporary_password(password.expose());
        req = match delivery {
            Delivery::Sms => req.desired_delivery_mediums(DeliveryMediumType::Sms),
            Delivery::Email | Delivery::Suppress => {
                req.desired_delivery_mediums(DeliveryMediumType::Email)
            }
        };
        req.send().await.map(|_| ()).map_err(from_sdk)
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TempPassword,
    ) -> Result<(), Fault> {
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(username)
            .password(password.expose())
            .permanent(false)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn update_attributes(
        &self,
        username: &str,
        attributes: &[(String, String)],
    ) -> Result<(), Fault> {
        self.client
            .admin_update_user_attributes()
            .user_pool_id(&self.pool_id)
            .username(username)
            .set_user_attributes(Some(
                attributes
                    .iter()
                    .filter_map(|(n, v)| attribute(n, v))
                    .collect(),
            ))
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn delete_attributes(&self, username: &str, names: &[String]) -> Result<(), Fault> {
        self.client
            .admin_delete_user_attributes()
            .user_pool_id(&self.pool_id)
            .username(username)
            .set_user_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn remove_from_group(&self, username: &str, group: &str) -> Result<(), Fault> {
        self.client
            .admin_remove_user_from_group()
            .user_pool_id(&self.pool_id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn reset_password(&self, username: &str) -> Result<(), Fault> {
        self.client
            .admin_reset_user_password()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn delivery_log(&self) -> Result<Option<DeliveryLog>, Fault> {
        let out = self
            .client
            .get_log_delivery_configuration()
            .user_pool_id(&self.pool_id)
            .send()
            .await
            .map_err(from_sdk)?;
        let Some(config) = out.log_delivery_configuration() else {
            return Ok(None);
        };
        Ok(config
            .log_configurations()
            .iter()
            .find(|c| {
                *c.event_source()
                    == aws_sdk_cognitoidentityprovider::types::EventSourceName::UserNotification
            })
            .and_then(|c| {
                let destination = c
                    .cloud_watch_logs_configuration()
                    .and_then(|d| d.log_group_arn())
                    .or_else(|| c.firehose_configuration().and_then(|d| d.stream_arn()))
                    .or_else(|| c.s3_configuration().and_then(|d| d.bucket_arn()))?;
                Some(DeliveryLog {
                    destination: destination.to_string(),
                    level: c.log_level().as_str().to_string(),
                })
            }))
    }

    async fn disable_user(&self, username: &str) -> Result<(), Fault> {
        self.client
            .admin_disable_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn enable_user(&self, username: &str) -> Result<(), Fault> {
        self.client
            .admin_enable_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn delete_user(&self, username: &str) -> Result<(), Fault> {
        self.client
            .admin_delete_user()
            .user_pool_id(&self.pool_id)
            .username(username)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }

    async fn send_quota(&self, region: &str) -> Result<SendQuota, Fault> {
        let config = aws_sdk_ses::config::Builder::from(&self.config)
            .region(Region::new(region.to_string()))
            .build();
        let out = aws_sdk_ses::Client::from_conf(config)
            .get_send_quota()
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(SendQuota {
            max_24_hour_send: out.max24_hour_send(),
            max_send_rate: out.max_send_rate(),
            sent_last_24_hours: out.sent_last24_hours(),
        })
    }

    async fn suppressed(&self, region: &str, email: &str) -> Result<Option<Suppressed>, Fault> {
        let config = aws_sdk_sesv2::config::Builder::from(&self.config)
            .region(Region::new(region.to_string()))
            .build();
        let out = match aws_sdk_sesv2::Client::from_conf(config)
            .get_suppressed_destination()
            .email_address(email)
            .send()
            .await
        {
            Ok(out) => out,
            // SES's answer for an address that is not on the list.
            Err(e) => {
                return match from_sdk(e) {
                    f if f.code.as_deref() == Some("NotFoundException") => Ok(None),
                    f => Err(f),
                };
            }
        };
        let Some(found) = out.suppressed_destination() else {
            return Ok(None);
        };
        let reason = match found.reason() {
            aws_sdk_sesv2::types::SuppressionListReason::Bounce => SuppressionReason::Bounce,
            aws_sdk_sesv2::types::SuppressionListReason::Complaint => SuppressionReason::Complaint,
            other => {
                return Err(Fault::local(format!(
                    "an unknown suppression reason: {}",
                    other.as_str()
                )));
            }
        };
        Ok(Some(Suppressed {
            reason,
            since: date(Some(found.last_update_time()))
                .ok_or_else(|| Fault::local("a suppression without a time"))?,
        }))
    }

    async fn add_to_group(&self, username: &str, group: &str) -> Result<(), Fault> {
        self.client
            .admin_add_user_to_group()
            .user_pool_id(&self.pool_id)
            .username(username)
            .group_name(group)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_pool_id() {
        assert_eq!(region_of_pool("eu-west-1_AbCdEf123"), Some("eu-west-1"));
        assert_eq!(region_of_pool("us-east-1_x"), Some("us-east-1"));
        assert_eq!(region_of_pool("nounderscore"), None);
        assert_eq!(region_of_pool("_x"), None);
    }
}
