//! What a failed Cognito call means for the job: the SDK's error reduced to a [`Fault`] (the
//! adapter's side), and one classifier from a fault of an operation to an [`ErrorClass`] (the
//! executor's side), which the retry loop and the row logic act on. Must not retry or decide.

use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};

use crate::limiter::Op;

/// How the job treats a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// TooManyRequestsException: back off and slow the category down.
    Throttled,
    /// A passing fault (5xx, timeout, dropped connection). `ambiguous`: the request may have
    /// been carried out even though no answer came back.
    Transient { ambiguous: bool },
    /// The daily email limit (LimitExceededException on a message-sending call): never retried;
    /// stops all further sending in the run.
    EmailQuota,
    /// UserNotFoundException.
    NotFound,
    /// UsernameExistsException / AliasExistsException.
    Exists,
    /// CodeDeliveryFailureException: the user was created but the message was not delivered.
    DeliveryFailed,
    /// A problem with this row only (bad parameter, unsupported state, ...): not retried.
    Permanent,
    /// A problem with the whole run (credentials, permissions, pool gone): stop.
    Fatal,
}

/// A failed call, with what the report shows. Never contains request parameters, so never a
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub op: Op,
    pub class: ErrorClass,
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.op.name(), self.message),
            None => write!(f, "{} failed: {}", self.op.name(), self.message),
        }
    }
}

impl std::error::Error for CallError {}

/// The class of a service error code, for an operation. Pure, so the table is tested directly.
fn classify_code(op: Op, code: &str, http_status: Option<u16>) -> ErrorClass {
    match code {
        "TooManyRequestsException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "ProvisionedThroughputExceededException" => ErrorClass::Throttled,
        // DynamoDB: the item is in another transaction's hands for a moment, or the same
        // transaction (its token) is still being applied; nothing more was written.
        "TransactionConflictException"
        | "TransactionInProgressException"
        | "ReplicatedWriteConflictException" => ErrorClass::Transient { ambiguous: false },
        "RequestTimeout" | "RequestTimeoutException" => ErrorClass::Transient {
            ambiguous: op.is_write(),
        },
        // DynamoDB's for too many table operations at once (`state init`).
        "LimitExceededException" if matches!(op, Op::State(_)) => ErrorClass::Throttled,
        // For the state, a missing table is an answer its caller words ("run `state init`").
        "ResourceNotFoundException" if matches!(op, Op::State(_)) => ErrorClass::Permanent,
        "LimitExceededException" if op.sends_message() => ErrorClass::EmailQuota,
        "LimitExceededException" => ErrorClass::Permanent,
        // A server error on a write may come after the write was made.
        "InternalErrorException"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorClass::Transient {
            ambiguous: op.is_write(),
        },
        "UserNotFoundException" => ErrorClass::NotFound,
        "UsernameExistsException" | "AliasExistsException" => ErrorClass::Exists,
        "CodeDeliveryFailureException" => ErrorClass::DeliveryFailed,
        // A Lambda trigger (pre sign-up, custom message) refused this one user; a user-level
        // NotAuthorizedException is about the user too. The row fails, the run goes on (the
        // executor stops it if the trigger refuses every row).
        "UserLambdaValidationException"
        | "UnexpectedLambdaException"
        | "InvalidLambdaResponseException"
        | "NotAuthorizedException" => ErrorClass::Permanent,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "ResourceNotFoundException"
        | "InvalidSmsRoleAccessPolicyException"
        | "InvalidSmsRoleTrustRelationshipException"
        | "InvalidEmailRoleAccessPolicyException"
        | "PreconditionNotMetException" => ErrorClass::Fatal,
        _ => match http_status {
            Some(s) if s >= 500 => ErrorClass::Transient {
                ambiguous: op.is_write(),
            },
            _ => ErrorClass::Permanent,
        },
    }
}

/// How one attempt failed, before anyone knows which operation it was: the adapter reports
/// this, and [`classify`] turns it into an [`ErrorClass`] for the operation the executor ran.
/// Never contains request parameters, so never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The service's error code (`__type`), when it answered with one.
    pub code: Option<String>,
    pub message: String,
}

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Cognito answered with an error; its HTTP status.
    Service { http_status: u16 },
    /// No answer in time: the request may have been carried out.
    Timeout,
    /// The request did not get out (`user`: our side's fault, such as a bad endpoint URL) or the
    /// connection broke while it was out.
    Dispatch { user: bool },
    /// An answer came but could not be read: the request may have been carried out.
    Response,
    /// The request could not be built.
    Construction,
    /// Anything the SDK adds later.
    Other,
}

impl Fault {
    /// A fault of our own making in the adapter (an answer without the field we need, ...).
    pub fn local(message: impl Into<String>) -> Self {
        Fault {
            kind: FaultKind::Other,
            code: None,
            message: message.into(),
        }
    }
}

/// The class of a fault, for an operation. The one classifier: pure, tested as a table. A read
/// the run can do without (the quota probe, the SES send quota) is never fatal: an account or a
/// policy that refuses it means "use the documented quotas, or the settings", not "stop".
pub fn classify(op: Op, fault: &Fault) -> ErrorClass {
    match fault_class(op, fault) {
        ErrorClass::Fatal if op.optional() => ErrorClass::Permanent,
        // The state's executor has nothing to stop (its caller stops the run on the error), and
        // a latched stop would leave every later settle a single attempt.
        ErrorClass::Fatal if matches!(op, Op::State(_)) => ErrorClass::Permanent,
        class => class,
    }
}

fn fault_class(op: Op, fault: &Fault) -> ErrorClass {
    match (fault.kind, fault.code.as_deref()) {
        (FaultKind::Service { http_status }, Some(code)) => {
            classify_code(op, code, Some(http_status))
        }
        (FaultKind::Service { http_status }, None) if http_status >= 500 => ErrorClass::Transient {
            ambiguous: op.is_write(),
        },
        (FaultKind::Service { .. }, None) => ErrorClass::Permanent,
        (FaultKind::Timeout | FaultKind::Response, _) => ErrorClass::Transient { ambiguous: true },
        (FaultKind::Dispatch { user: true }, _) => ErrorClass::Fatal,
        (FaultKind::Dispatch { user: false }, _) => ErrorClass::Transient { ambiguous: true },
        (FaultKind::Construction, _) => ErrorClass::Fatal,
        (FaultKind::Other, _) => ErrorClass::Permanent,
    }
}

impl CallError {
    /// What a fault of `op` means for the job.
    pub fn new(op: Op, fault: Fault) -> Self {
        CallError {
            op,
            class: classify(op, &fault),
            code: fault.code,
            message: fault.message,
        }
    }
}

/// Maps any SDK error to a [`Fault`]. The only place that looks inside an `SdkError`.
pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    fault_of(&err)
}

/// [`from_sdk`] of an error the caller keeps (the DynamoDB state reads a failed condition).
pub fn fault_of<E, R>(err: &SdkError<E, R>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    let (kind, code, message) = match err {
        SdkError::ServiceError(se) => {
            let http_status = se.raw().status_code();
            let e = se.err();
            match e.code() {
                Some(code) => (
                    FaultKind::Service { http_status },
                    Some(code.to_string()),
                    e.message().unwrap_or("").to_string(),
                ),
                None => (
                    FaultKind::Service { http_status },
                    None,
                    format!("HTTP {http_status} without an error code"),
                ),
            }
        }
        SdkError::TimeoutError(_) => (FaultKind::Timeout, None, "no answer in time".to_string()),
        SdkError::DispatchFailure(d) => {
            (FaultKind::Dispatch { user: d.is_user() }, None, chain(err))
        }
        SdkError::ResponseError(_) => (FaultKind::Response, None, chain(err)),
        SdkError::ConstructionFailure(_) => (FaultKind::Construction, None, chain(err)),
        _ => (FaultKind::Other, None, chain(err)),
    };
    Fault {
        kind,
        code,
        message,
    }
}

/// The whole error chain on one line ("dispatch failure: io error: connection refused").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The HTTP status of a raw response, so `from_sdk` stays generic over the response type.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::StateOp;

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let cases: &[(Op, &str, Option<u16>, ErrorClass)] = &[
            (
                Op::AdminCreateUser,
                "TooManyRequestsException",
                Some(400),
                Throttled,
            ),
            (
                Op::AdminCreateUser,
                "LimitExceededException",
                Some(400),
                EmailQuota,
            ),
            (
                Op::AdminCreateUserResend,
                "LimitExceededException",
                Some(400),
                EmailQuota,
            ),
            (
                Op::AdminAddUserToGroup,
                "LimitExceededException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminGetUser,
                "InternalErrorException",
                Some(500),
                Transient { ambiguous: false },
            ),
            (
                Op::AdminGetUser,
                "UserNotFoundException",
                Some(400),
                NotFound,
            ),
            (
                Op::AdminCreateUser,
                "UsernameExistsException",
                Some(400),
                Exists,
            ),
            (
                Op::AdminCreateUser,
                "AliasExistsException",
                Some(400),
                Exists,
            ),
            (
                Op::AdminCreateUser,
                "CodeDeliveryFailureException",
                Some(400),
                DeliveryFailed,
            ),
            (
                Op::DescribeUserPool,
                "ResourceNotFoundException",
                Some(400),
                Fatal,
            ),
            (Op::AdminGetUser, "AccessDeniedException", Some(400), Fatal),
            (
                Op::AdminGetUser,
                "UnrecognizedClientException",
                Some(400),
                Fatal,
            ),
            (
                Op::AdminCreateUser,
                "InvalidParameterException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminCreateUser,
                "UserLambdaValidationException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminCreateUser,
                "UnexpectedLambdaException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminCreateUser,
                "InvalidLambdaResponseException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminGetUser,
                "NotAuthorizedException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminCreateUserResend,
                "UnsupportedUserStateException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminGetUser,
                "SomethingNew",
                Some(503),
                Transient { ambiguous: false },
            ),
            (Op::AdminGetUser, "SomethingNew", Some(400), Permanent),
            (
                Op::GetProvisionedLimit,
                "AccessDeniedException",
                Some(400),
                Permanent,
            ),
            // A 5xx to a write may come after the write was made.
            (
                Op::AdminCreateUser,
                "InternalErrorException",
                Some(500),
                Transient { ambiguous: true },
            ),
            (
                Op::AdminSetUserPassword,
                "ServiceUnavailableException",
                Some(503),
                Transient { ambiguous: true },
            ),
            (
                Op::AdminCreateUserResend,
                "SomethingNew",
                Some(502),
                Transient { ambiguous: true },
            ),
            // The DynamoDB state's answers.
            (
                Op::State(StateOp::PutItem),
                "ProvisionedThroughputExceededException",
                Some(400),
                Throttled,
            ),
            (
                Op::State(StateOp::Query),
                "ThrottlingException",
                Some(400),
                Throttled,
            ),
            (
                Op::State(StateOp::UpdateItem),
                "TransactionConflictException",
                Some(400),
                Transient { ambiguous: false },
            ),
            (
                Op::State(StateOp::PutItem),
                "InternalServerError",
                Some(500),
                Transient { ambiguous: true },
            ),
            (
                Op::State(StateOp::GetItem),
                "InternalServerError",
                Some(500),
                Transient { ambiguous: false },
            ),
            (
                Op::State(StateOp::PutItem),
                "ConditionalCheckFailedException",
                Some(400),
                Permanent,
            ),
            (
                Op::State(StateOp::DescribeTable),
                "ResourceNotFoundException",
                Some(400),
                Permanent,
            ),
            (
                Op::AdminGetUser,
                "ResourceNotFoundException",
                Some(400),
                Fatal,
            ),
            (
                Op::State(StateOp::PutItem),
                "AccessDeniedException",
                Some(400),
                Permanent,
            ),
            (
                Op::State(StateOp::CreateTable),
                "LimitExceededException",
                Some(400),
                Throttled,
            ),
            (
                Op::State(StateOp::TransactWriteItems),
                "TransactionInProgressException",
                Some(400),
                Transient { ambiguous: false },
            ),
        ];
        for (op, code, status, want) in cases {
            let fault = Fault {
                kind: FaultKind::Service {
                    http_status: status.unwrap_or(400),
                },
                code: Some(code.to_string()),
                message: String::new(),
            };
            assert_eq!(classify(*op, &fault), *want, "{op:?} {code}");
        }
    }

    #[test]
    fn faults_without_a_code_are_classified_by_where_they_happened() {
        use ErrorClass::*;
        let fault = |kind| Fault {
            kind,
            code: None,
            message: String::new(),
        };
        let cases = [
            (
                FaultKind::Service { http_status: 502 },
                Transient { ambiguous: false },
            ),
            (FaultKind::Service { http_status: 400 }, Permanent),
            (FaultKind::Timeout, Transient { ambiguous: true }),
            (FaultKind::Response, Transient { ambiguous: true }),
            (
                FaultKind::Dispatch { user: false },
                Transient { ambiguous: true },
            ),
            (FaultKind::Dispatch { user: true }, Fatal),
            (FaultKind::Construction, Fatal),
            (FaultKind::Other, Permanent),
        ];
        for (kind, want) in cases {
            assert_eq!(classify(Op::AdminGetUser, &fault(kind)), want, "{kind:?}");
        }
        let throttled = Fault {
            kind: FaultKind::Service { http_status: 400 },
            code: Some("TooManyRequestsException".into()),
            message: String::new(),
        };
        assert_eq!(classify(Op::ListUsers, &throttled), Throttled);
    }
}
