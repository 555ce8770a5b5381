//! What a failed Cognito call means for the job: one classifier from the SDK's error to an
//! [`ErrorClass`], which the retry loop and the row logic act on.

use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::result::DispatchFailure;

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
pub fn classify_code(op: Op, code: &str, http_status: Option<u16>) -> ErrorClass {
    match code {
        "TooManyRequestsException" | "ThrottlingException" | "RequestLimitExceeded" => {
            ErrorClass::Throttled
        }
        "LimitExceededException" if op.sends_message() => ErrorClass::EmailQuota,
        "LimitExceededException" => ErrorClass::Permanent,
        "InternalErrorException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => ErrorClass::Transient { ambiguous: false },
        "UserNotFoundException" => ErrorClass::NotFound,
        "UsernameExistsException" | "AliasExistsException" => ErrorClass::Exists,
        "CodeDeliveryFailureException" => ErrorClass::DeliveryFailed,
        "AccessDeniedException"
        | "NotAuthorizedException"
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
        | "InvalidLambdaResponseException"
        | "UnexpectedLambdaException"
        | "UserLambdaValidationException"
        | "PreconditionNotMetException" => ErrorClass::Fatal,
        _ => match http_status {
            Some(s) if s >= 500 => ErrorClass::Transient { ambiguous: false },
            _ => ErrorClass::Permanent,
        },
    }
}

fn dispatch_class(d: &DispatchFailure) -> ErrorClass {
    if d.is_user() {
        ErrorClass::Fatal
    } else {
        ErrorClass::Transient { ambiguous: true }
    }
}

/// Maps any SDK error of an operation to a [`CallError`].
pub fn from_sdk<E, R>(op: Op, err: SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    let (class, code, message) = match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status_code();
            let e = se.err();
            match e.code() {
                Some(code) => (
                    classify_code(op, code, Some(status)),
                    Some(code.to_string()),
                    e.message().unwrap_or("").to_string(),
                ),
                None => (
                    if status >= 500 {
                        ErrorClass::Transient { ambiguous: false }
                    } else {
                        ErrorClass::Permanent
                    },
                    None,
                    format!("HTTP {status} without an error code"),
                ),
            }
        }
        SdkError::TimeoutError(_) => (
            ErrorClass::Transient { ambiguous: true },
            None,
            "timed out waiting for Cognito".to_string(),
        ),
        SdkError::DispatchFailure(d) => (dispatch_class(d), None, chain(&err)),
        SdkError::ResponseError(_) => {
            (ErrorClass::Transient { ambiguous: true }, None, chain(&err))
        }
        SdkError::ConstructionFailure(_) => (ErrorClass::Fatal, None, chain(&err)),
        _ => (ErrorClass::Permanent, None, chain(&err)),
    };
    CallError {
        op,
        class,
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
        ];
        for (op, code, status, want) in cases {
            assert_eq!(classify_code(*op, code, *status), *want, "{op:?} {code}");
        }
    }
}
