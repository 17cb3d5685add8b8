//! The one error body of SPEC section 5: every failure of every route leaves through
//! [`ApiError`]'s `ResponseError` implementation.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use secretgen_core::service::{self, Subject};

/// The gRPC status code of an error body: the gRPC transport's own type, one for both
/// transports (SPEC section 5's table).
pub use tonic::Code as GrpcCode;

/// One field violation of a `google.rpc.BadRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The JSON field, e.g. `length`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Violation {
        Violation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// An API failure: HTTP status, gRPC code, message and the field violations, if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: GrpcCode,
    message: String,
    violations: Vec<Violation>,
    allow: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: GrpcCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            violations: Vec::new(),
            allow: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed (no field to name).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, GrpcCode::InvalidArgument, message)
    }

    /// 400 with every violated rule as a field violation.
    pub fn invalid(message: impl Into<String>, violations: Vec<Violation>) -> ApiError {
        ApiError {
            violations,
            ..ApiError::bad_request(message)
        }
    }

    /// 401: no token, or one the server does not know.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, GrpcCode::Unauthenticated, message)
    }

    /// 404: no such route.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            GrpcCode::NotFound,
            format!("no route {path}"),
        )
    }

    /// 405: the route exists, with other methods (grpc-gateway answers the same).
    pub fn method_not_allowed(method: &str, allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                GrpcCode::Unimplemented,
                format!("method {method} is not allowed here; allowed: {allow}"),
            )
        }
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            GrpcCode::InvalidArgument,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 408: the request body did not arrive, whole, within `timeout`; the connection is
    /// closed after the answer.
    ///
    /// The SPEC's table has no row for it. grpc-gateway maps gRPC's DEADLINE_EXCEEDED (4) to
    /// HTTP 504 and has no code that maps to 408; of the gRPC codes, DEADLINE_EXCEEDED is the
    /// one that says what happened (the time allowed ran out before the operation could
    /// complete), so 408 carries code 4. INVALID_ARGUMENT (3) would blame the content of a
    /// body that was never read, and CANCELLED (1) means the client gave up, which it did not.
    pub fn body_timeout(timeout: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            GrpcCode::DeadlineExceeded,
            format!(
                "the request body did not arrive within {} s; send the whole body promptly",
                timeout.as_secs_f64()
            ),
        )
    }

    /// 429: over the token's rate, or a subject over its limits; a request may succeed
    /// again after `wait`.
    pub fn rate_limited(message: &str, wait: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                GrpcCode::ResourceExhausted,
                message,
            )
        }
    }

    /// 500: a failure of the server itself.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::Internal,
            message,
        )
    }

    /// 503: the store cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            message,
        )
    }

    /// The gRPC code.
    pub fn code(&self) -> GrpcCode {
        self.code
    }

    /// The body: `{"code", "message", "details"}`.
    pub fn body(&self) -> Value {
        let details = if self.violations.is_empty() {
            Vec::new()
        } else {
            let field_violations: Vec<Value> = self
                .violations
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect();
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": field_violations,
            })]
        };
        json!({
            "code": self.code as i32,
            "message": self.message,
            "details": details,
        })
    }
}

/// The one mapping of the use cases' error to HTTP: status, gRPC code (SPEC section 5's
/// table) and the JSON names of the fields.
impl From<service::Error> for ApiError {
    fn from(e: service::Error) -> ApiError {
        use service::Error as E;
        let message = e.to_string();
        let damaged = e.is_damaged();
        match e {
            E::Unauthenticated(_) => ApiError::unauthenticated(message),
            E::PermissionDenied(_) => {
                ApiError::new(StatusCode::FORBIDDEN, GrpcCode::PermissionDenied, message)
            }
            E::RateLimited {
                message,
                retry_after,
            } => ApiError::rate_limited(message, retry_after),
            E::Invalid { violations, .. } => ApiError::invalid(
                message,
                violations
                    .into_iter()
                    .map(|v| Violation::new(json_name(v.subject), v.description))
                    .collect(),
            ),
            E::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, GrpcCode::NotFound, message),
            E::AlreadyExists { violation, .. } => ApiError {
                violations: vec![Violation::new(
                    json_name(violation.subject),
                    violation.description,
                )],
                ..ApiError::new(StatusCode::CONFLICT, GrpcCode::AlreadyExists, message)
            },
            E::Store { .. } if damaged => ApiError::internal(message),
            E::Unavailable(_) | E::Store { .. } => ApiError::unavailable(message),
            E::FailedPrecondition(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                GrpcCode::FailedPrecondition,
                message,
            ),
            E::Internal(_) => ApiError::internal(message),
        }
    }
}

/// The JSON name of what a violation is about: a configuration field by its protojson name
/// (lowerCamelCase, as SPEC section 4 writes them, which the engine's messages use too), and
/// `count`. The gRPC transport names the same fields its own way
/// (`crate::grpc::status::field_name`).
pub fn json_name(subject: Subject) -> &'static str {
    match subject {
        Subject::Config(field) => field.name(),
        Subject::Count => "count",
        Subject::TokenName => "name",
        Subject::TokenPermissions => "permissions",
        Subject::TokenExpiry => "expiry",
        Subject::CodeSubject => "subject",
        Subject::TypedCode => "code",
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(allow) = self.allow {
            response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot be reused.
            response.force_close();
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(self.body())
    }
}
