//! The one mapping of the use cases' error to gRPC: a status with the code of SPEC section 5's
//! table, rule violations as `google.rpc.BadRequest` and the rate limit's wait as
//! `google.rpc.RetryInfo`, both in `grpc-status-details-bin`. Field paths are the protobuf
//! field names (`include_digits`), as `google.rpc.BadRequest` documents them.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use secretgen_core::service::{self, Subject};
use secretgen_engine::config::Field;

/// The protobuf name of what a violation is about.
pub fn field_name(subject: Subject) -> &'static str {
    match subject {
        Subject::Config(field) => match field {
            Field::GeneratorType => "generator_type",
            Field::Length => "length",
            Field::Expiry => "expiry",
            Field::IncludeLowerLetters => "include_lower_letters",
            Field::IncludeUpperLetters => "include_upper_letters",
            Field::IncludeDigits => "include_digits",
            Field::IncludeSymbols => "include_symbols",
            Field::ExcludeAmbiguous => "exclude_ambiguous",
            Field::RequireEachClass => "require_each_class",
            Field::EntropyBits => "entropy_bits",
        },
        Subject::Count => "count",
        Subject::TokenName => "name",
        Subject::TokenPermissions => "permissions",
        Subject::TokenExpiry => "expiry",
        Subject::CodeSubject => "subject",
        Subject::TypedCode => "code",
    }
}

/// An INVALID_ARGUMENT status with every violation, each a field path and what is wrong: in
/// a `google.rpc.BadRequest`, and in the message too (`message: field: what; ...`), for the
/// clients that show a status's message and not its details.
pub fn invalid(message: &str, violations: Vec<(String, String)>) -> Status {
    let mut text = message.to_owned();
    let mut details = ErrorDetails::new();
    for (i, (field, description)) in violations.into_iter().enumerate() {
        text.push_str(if i == 0 { ": " } else { "; " });
        text.push_str(&field);
        text.push_str(": ");
        text.push_str(&description);
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, text, details)
}

/// The status of a use case's error.
pub fn status(e: service::Error) -> Status {
    use service::Error as E;
    let message = e.to_string();
    let damaged = e.is_damaged();
    match e {
        E::Unauthenticated(_) => Status::unauthenticated(message),
        E::PermissionDenied(_) => Status::permission_denied(message),
        E::RateLimited { retry_after, .. } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        E::Invalid { violations, .. } => invalid(
            &message,
            violations
                .into_iter()
                .map(|v| (field_name(v.subject).to_owned(), v.description))
                .collect(),
        ),
        E::NotFound(_) => Status::not_found(message),
        E::AlreadyExists { violation, .. } => {
            let field = field_name(violation.subject).to_owned();
            let mut details = ErrorDetails::new();
            details.add_bad_request_violation(field, violation.description);
            Status::with_error_details(Code::AlreadyExists, message, details)
        }
        E::Store { .. } if damaged => Status::internal(message),
        E::Unavailable(_) | E::Store { .. } => Status::unavailable(message),
        E::FailedPrecondition(_) => Status::failed_precondition(message),
        E::Internal(_) => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_code_of_the_spec_table() {
        use std::time::Duration;
        let cases = [
            (service::Error::Unauthenticated("x"), Code::Unauthenticated),
            (
                service::Error::PermissionDenied(secretgen_core::token::Permission::IamWrite),
                Code::PermissionDenied,
            ),
            (
                service::Error::RateLimited {
                    message: "slow down",
                    retry_after: Duration::from_millis(1500),
                },
                Code::ResourceExhausted,
            ),
            (
                service::Error::invalid("bad", Subject::Count, "why".into()),
                Code::InvalidArgument,
            ),
            (service::Error::NotFound("gone".into()), Code::NotFound),
            (service::Error::Unavailable("down"), Code::Unavailable),
            (service::Error::Internal("broke"), Code::Internal),
        ];
        for (error, code) in cases {
            let status = status(error);
            assert_eq!(status.code(), code, "{status:?}");
            // The numbers of SPEC section 5's table.
            assert!([3, 5, 7, 8, 13, 14, 16].contains(&(code as i32)));
        }
    }

    #[test]
    fn violations_travel_as_bad_request_and_the_wait_as_retry_info() {
        let status = status(service::Error::Invalid {
            message: "invalid secret generator configuration",
            violations: vec![
                service::Violation {
                    subject: Subject::Config(Field::IncludeDigits),
                    description: "one".into(),
                },
                service::Violation {
                    subject: Subject::Config(Field::Length),
                    description: "two".into(),
                },
            ],
        });
        let details = status.get_error_details();
        let bad = details.bad_request().expect("a BadRequest detail");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(fields, [("include_digits", "one"), ("length", "two")]);
        assert_eq!(
            status.message(),
            "invalid secret generator configuration: include_digits: one; length: two"
        );

        let limited = super::status(service::Error::RateLimited {
            message: "slow down",
            retry_after: std::time::Duration::from_millis(250),
        });
        let retry = limited.get_error_details();
        let delay = retry.retry_info().and_then(|r| r.retry_delay);
        assert_eq!(delay, Some(std::time::Duration::from_millis(250)));
    }
}
