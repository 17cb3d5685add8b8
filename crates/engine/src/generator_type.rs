//! The eight generator types of ZITADEL's admin API (SPEC section 1).

use std::fmt;
use std::str::FromStr;

/// What a secret is for. Each type has its own configuration and its own live generator.
///
/// A `GeneratorType` is always one of the eight usable types: `UNSPECIFIED` cannot be
/// built. Parse one from the full API name (`SECRET_GENERATOR_TYPE_OTP_SMS`), the short name
/// in any case (`otp_sms`) or the number (`7`); [`fmt::Display`] writes the full name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GeneratorType {
    /// Code sent to a new user to initialise the account.
    InitCode = 1,
    /// Code that verifies an email address.
    VerifyEmailCode = 2,
    /// Code that verifies a phone number.
    VerifyPhoneCode = 3,
    /// Code that authorises a password reset.
    PasswordResetCode = 4,
    /// Code that starts a passwordless (passkey) registration.
    PasswordlessInitCode = 5,
    /// Client secret of an application; the one type whose secrets may never expire.
    AppSecret = 6,
    /// One-time password sent by SMS.
    OtpSms = 7,
    /// One-time password sent by email.
    OtpEmail = 8,
}

/// The prefix every full API name carries.
const PREFIX: &str = "SECRET_GENERATOR_TYPE_";

impl GeneratorType {
    /// All eight types, in the order of their numbers.
    pub const ALL: [GeneratorType; 8] = [
        GeneratorType::InitCode,
        GeneratorType::VerifyEmailCode,
        GeneratorType::VerifyPhoneCode,
        GeneratorType::PasswordResetCode,
        GeneratorType::PasswordlessInitCode,
        GeneratorType::AppSecret,
        GeneratorType::OtpSms,
        GeneratorType::OtpEmail,
    ];

    /// The protobuf enum number, 1 to 8.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Position in [`GeneratorType::ALL`], 0 to 7.
    pub(crate) const fn index(self) -> usize {
        self as usize - 1
    }

    /// The short name, e.g. `OTP_SMS`.
    pub const fn short_name(self) -> &'static str {
        match self {
            GeneratorType::InitCode => "INIT_CODE",
            GeneratorType::VerifyEmailCode => "VERIFY_EMAIL_CODE",
            GeneratorType::VerifyPhoneCode => "VERIFY_PHONE_CODE",
            GeneratorType::PasswordResetCode => "PASSWORD_RESET_CODE",
            GeneratorType::PasswordlessInitCode => "PASSWORDLESS_INIT_CODE",
            GeneratorType::AppSecret => "APP_SECRET",
            GeneratorType::OtpSms => "OTP_SMS",
            GeneratorType::OtpEmail => "OTP_EMAIL",
        }
    }

    /// The full API name, e.g. `SECRET_GENERATOR_TYPE_OTP_SMS`; responses always write this.
    pub const fn full_name(self) -> &'static str {
        match self {
            GeneratorType::InitCode => "SECRET_GENERATOR_TYPE_INIT_CODE",
            GeneratorType::VerifyEmailCode => "SECRET_GENERATOR_TYPE_VERIFY_EMAIL_CODE",
            GeneratorType::VerifyPhoneCode => "SECRET_GENERATOR_TYPE_VERIFY_PHONE_CODE",
            GeneratorType::PasswordResetCode => "SECRET_GENERATOR_TYPE_PASSWORD_RESET_CODE",
            GeneratorType::PasswordlessInitCode => "SECRET_GENERATOR_TYPE_PASSWORDLESS_INIT_CODE",
            GeneratorType::AppSecret => "SECRET_GENERATOR_TYPE_APP_SECRET",
            GeneratorType::OtpSms => "SECRET_GENERATOR_TYPE_OTP_SMS",
            GeneratorType::OtpEmail => "SECRET_GENERATOR_TYPE_OTP_EMAIL",
        }
    }

    /// The type with this protobuf number; 0 (`UNSPECIFIED`) and anything above 8 are refused.
    pub fn from_number(number: u64) -> Result<Self, ParseGeneratorTypeError> {
        match number {
            0 => Err(ParseGeneratorTypeError::unspecified()),
            1..=8 => Ok(GeneratorType::ALL[number as usize - 1]),
            _ => Err(ParseGeneratorTypeError::unknown(&number.to_string())),
        }
    }
}

impl fmt::Display for GeneratorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full_name())
    }
}

impl FromStr for GeneratorType {
    type Err = ParseGeneratorTypeError;

    /// Accepts the full name, the short name (both in any case) or the number.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
            // A number too large for u64 is simply an unknown number.
            return match input.parse::<u64>() {
                Ok(n) => GeneratorType::from_number(n),
                Err(_) => Err(ParseGeneratorTypeError::unknown(input)),
            };
        }
        let upper = input.to_ascii_uppercase();
        let short = upper.strip_prefix(PREFIX).unwrap_or(&upper);
        if short == "UNSPECIFIED" {
            return Err(ParseGeneratorTypeError::unspecified());
        }
        GeneratorType::ALL
            .into_iter()
            .find(|t| t.short_name() == short)
            .ok_or_else(|| ParseGeneratorTypeError::unknown(input))
    }
}

/// Why a text did not name a usable generator type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseGeneratorTypeError {
    /// The offending input, shortened, or `None` for `UNSPECIFIED`.
    input: Option<String>,
}

impl ParseGeneratorTypeError {
    /// Longest part of the input quoted back in the message.
    const QUOTED_MAX: usize = 64;

    fn unspecified() -> Self {
        ParseGeneratorTypeError { input: None }
    }

    fn unknown(input: &str) -> Self {
        let quoted: String = input.chars().take(Self::QUOTED_MAX).collect();
        ParseGeneratorTypeError {
            input: Some(quoted),
        }
    }

    /// Whether the input named `SECRET_GENERATOR_TYPE_UNSPECIFIED` (or 0), rather than nothing known.
    pub fn is_unspecified(&self) -> bool {
        self.input.is_none()
    }
}

impl fmt::Display for ParseGeneratorTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.input {
            None => f.write_str(
                "SECRET_GENERATOR_TYPE_UNSPECIFIED is not a usable generator type; \
                 name one of INIT_CODE, VERIFY_EMAIL_CODE, VERIFY_PHONE_CODE, PASSWORD_RESET_CODE, \
                 PASSWORDLESS_INIT_CODE, APP_SECRET, OTP_SMS, OTP_EMAIL (or 1 to 8)",
            ),
            Some(input) => write!(
                f,
                "unknown generator type {input:?}; expected a full name such as \
                 SECRET_GENERATOR_TYPE_OTP_SMS, a short name such as otp_sms, or a number from 1 to 8"
            ),
        }
    }
}

impl std::error::Error for ParseGeneratorTypeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_type_parses_from_its_three_spellings() {
        for t in GeneratorType::ALL {
            assert_eq!(t.full_name().parse::<GeneratorType>(), Ok(t));
            assert_eq!(t.short_name().parse::<GeneratorType>(), Ok(t));
            assert_eq!(
                t.short_name().to_lowercase().parse::<GeneratorType>(),
                Ok(t)
            );
            assert_eq!(t.number().to_string().parse::<GeneratorType>(), Ok(t));
            assert_eq!(t.to_string(), t.full_name());
            assert_eq!(GeneratorType::ALL[t.index()], t);
        }
    }

    #[test]
    fn numbers_match_the_spec_table() {
        assert_eq!(GeneratorType::InitCode.number(), 1);
        assert_eq!(GeneratorType::AppSecret.number(), 6);
        assert_eq!("7".parse(), Ok(GeneratorType::OtpSms));
        assert_eq!("0008".parse(), Ok(GeneratorType::OtpEmail));
    }

    #[test]
    fn unspecified_is_refused_in_every_spelling() {
        for s in [
            "SECRET_GENERATOR_TYPE_UNSPECIFIED",
            "unspecified",
            "0",
            "000",
        ] {
            let err = s.parse::<GeneratorType>().unwrap_err();
            assert!(err.is_unspecified(), "{s}");
            assert!(err.to_string().contains("UNSPECIFIED"));
        }
    }

    #[test]
    fn unknown_names_and_numbers_are_refused() {
        for s in [
            "",
            "9",
            "18446744073709551616000",
            "OTP",
            "SECRET_GENERATOR_TYPE_",
            " OTP_SMS",
            "-1",
        ] {
            let err = s.parse::<GeneratorType>().unwrap_err();
            assert!(!err.is_unspecified(), "{s:?}");
        }
    }

    #[test]
    fn long_input_is_shortened_in_the_message() {
        let err = "x".repeat(10_000).parse::<GeneratorType>().unwrap_err();
        assert!(err.to_string().len() < 300);
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepts_only_the_table(s in ".{0,40}") {
            if let Ok(t) = s.parse::<GeneratorType>() {
                let upper = s.to_ascii_uppercase();
                prop_assert!(
                    upper == t.full_name()
                        || upper == t.short_name()
                        || s.trim_start_matches('0') == t.number().to_string()
                );
            }
        }
    }
}
