//! Identifiers, validated once at the edge so that every value of these types is safe to use in a
//! bucket key, a queue header, a SQL parameter or a log line.
//!
//! Validation rejects anything that could escape a tenant's prefix in a bucket: empty strings,
//! `.`/`..`, separators, control characters and over-long values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} \"{value}\": {rule}")]
pub struct IdError {
    /// Which kind of identifier was being parsed ("tenant id", "org id", ...).
    pub what: &'static str,
    /// The rejected input, shortened to 80 characters, escaped once (control characters,
    /// non-ASCII, quotes and backslashes) so it prints as typed between the quotes.
    pub value: String,
    /// The rule it broke, phrased as what a valid value looks like.
    pub rule: &'static str,
}

impl IdError {
    pub(crate) fn new(what: &'static str, value: &str, rule: &'static str) -> Self {
        let value: String = value
            .chars()
            .take(80)
            .flat_map(char::escape_default)
            .collect();
        IdError { what, value, rule }
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $check(&value).map_err(|rule| IdError::new($what, &value, rule))?;
                Ok($name(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A tenant (a customer of the vendor): a lowercase slug such as `acme-corp`.
    TenantId,
    "tenant id",
    check_tenant
);
string_id!(
    /// A Salesforce org id: 15 or 18 alphanumeric characters starting with `00D`.
    OrgId,
    "org id",
    check_org
);
string_id!(
    /// A Salesforce record id: 15 or 18 ASCII letters and digits (`001...`, `00P...`). What a
    /// backup indexes, a restore names and a staging key ends with.
    RecordId,
    "record id",
    check_record_id
);
string_id!(
    /// A Salesforce object API name such as `Account` or `Invoice__c`.
    SObjectName,
    "sobject name",
    check_sobject
);

fn check_tenant(s: &str) -> Result<(), &'static str> {
    let ok_len = (1..=63).contains(&s.len());
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !s.starts_with('-') && !s.ends_with('-');
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err("1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'")
    }
}

fn check_org(s: &str) -> Result<(), &'static str> {
    let ok = (s.len() == 15 || s.len() == 18)
        && s.starts_with("00D")
        && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("15 or 18 alphanumeric characters starting with 00D")
    }
}

fn check_record_id(s: &str) -> Result<(), &'static str> {
    let ok = matches!(s.len(), 15 | 18) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("15 or 18 ASCII letters and digits, as Salesforce gives them")
    }
}

fn check_sobject(s: &str) -> Result<(), &'static str> {
    let first_is_letter = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    let ok = first_is_letter
        && s.len() <= 80
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.ends_with('_');
    if ok {
        Ok(())
    } else {
        Err("up to 80 characters of A-Z, a-z, 0-9 and '_', starting with a letter")
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) identifier.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| IdError::new($what, s, "a UUID such as 0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e"))
            }
        }
    };
}

uuid_id!(
    /// One backup of one org. Appears in bucket keys.
    BackupId,
    "backup id"
);
uuid_id!(
    /// One job (a message on the jobs queue); the idempotency key of its effects.
    JobId,
    "job id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_that_could_escape_a_prefix_are_rejected() {
        for bad in [
            "", "..", "a/b", "/acme", "ACME", "acme\n", "-acme", "acme-", "a b", "a\\b",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            TenantId::new("acme-corp-2").map(|t| t.to_string()),
            Ok("acme-corp-2".to_owned())
        );
    }

    #[test]
    fn org_ids_follow_salesforce_shape() {
        assert!(OrgId::new("00D000000000001AAA").is_ok());
        assert!(OrgId::new("00D000000000001").is_ok());
        for bad in [
            "001000000000001AAA",
            "00D00000000000",
            "00D000000000001AA/",
            "../../x",
        ] {
            assert!(OrgId::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sobject_names_are_api_names() {
        for good in ["Account", "Invoice__c", "ns__Thing__c", "ContentVersion"] {
            assert!(SObjectName::new(good).is_ok(), "{good:?}");
        }
        for bad in ["", "1Account", "Account/..", "Acc ount", "Account_", "Ä"] {
            assert!(SObjectName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn record_ids_are_salesforce_ids() {
        for good in [
            "001000000000001",
            "001000000000001AAA",
            "00P5g00000AbCdEAAA",
        ] {
            assert!(RecordId::new(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "..",
            "/001000000000001",
            "001000000000001AA",
            "00100000000000%2e",
            "001000000000001\0AA",
            "00100000000000\u{0}1",
            "0010000000000０1",
            "001' OR Id != '",
        ] {
            let err = RecordId::new(bad).expect_err(bad);
            assert!(err.to_string().contains("15 or 18"), "{err}");
        }
    }

    #[test]
    fn error_escapes_control_characters() {
        let err = TenantId::new("a\u{1b}[31m").unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'));
        // Escaped once: an operator reads the value as it was sent.
        let err = TenantId::new("acme\n\u{0}\"").unwrap_err().to_string();
        assert!(
            err.starts_with(r#"invalid tenant id "acme\n\u{0}\"": "#),
            "{err}"
        );
    }

    #[test]
    fn ids_round_trip_through_serde() {
        let t: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(t.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"../x\"").is_err());
        let b = BackupId::generate();
        assert_eq!(b.to_string().parse::<BackupId>().unwrap(), b);
    }
}
