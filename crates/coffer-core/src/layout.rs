//! The bucket layout, documented for customers and kept stable:
//!
//! ```text
//! {base_path}/{tenant}/{org}/backups/{backup_id}/manifest.json
//! {base_path}/{tenant}/{org}/backups/{backup_id}/records/{sobject}/part-{nnnnn}.csv.gz
//! {base_path}/{tenant}/{org}/backups/{backup_id}/staging/{sobject}/{record_id}  (transient)
//! {base_path}/{tenant}/{org}/files/{sha256-prefix}/{sha256}     (shared by the org's backups)
//! {base_path}/{tenant}/{org}/restores/{restore_id}/report.csv.gz
//! ```
//!
//! Keys are built only from validated parts ([`BasePath`], [`TenantId`], [`OrgId`], [`BackupId`],
//! [`SObjectName`]), so no input can make a key leave the tenant's prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{BackupId, IdError, OrgId, RecordId, SObjectName, TenantId};

/// An optional prefix under which a tenant's data lives in its bucket, such as `coffer/prod`.
///
/// Empty means the bucket root. Segments are separated by `/`; each is 1 to 128 characters of
/// `A-Z a-z 0-9 - _ .`, and none is `.` or `..`. No leading or trailing `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BasePath(String);

impl BasePath {
    /// Validates a base path; an empty string is the bucket root. The error names what to
    /// change: a base path can never leave the bucket or reach another tenant's prefix.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        match Self::problem(&value) {
            None => Ok(BasePath(value)),
            Some(rule) => Err(IdError::new("base path", &value, rule)),
        }
    }

    /// What is wrong with `v` as a base path, phrased as the fix; `None` when it is valid.
    fn problem(v: &str) -> Option<&'static str> {
        if v.is_empty() {
            return None;
        }
        if v.len() > 512 {
            return Some("at most 512 characters; use a shorter prefix such as coffer/prod");
        }
        if v.bytes().any(|b| b.is_ascii_control()) {
            return Some(
                "control characters are not allowed; use segments of A-Z, a-z, 0-9, '-', '_' \
                 and '.' such as coffer/prod",
            );
        }
        if v.starts_with('/') {
            return Some(
                "a base path is relative to the bucket: drop the leading '/' (e.g. coffer/prod)",
            );
        }
        if v.ends_with('/') {
            return Some("drop the trailing '/' (e.g. coffer/prod)");
        }
        let segments = || v.split('/');
        if segments().any(str::is_empty) {
            return Some("an empty segment ('//'): separate segments with a single '/'");
        }
        if segments().any(|s| s == "." || s == "..") {
            return Some(
                "'.' and '..' segments are not allowed (a base path cannot leave its place in \
                 the bucket); name the folder itself, e.g. coffer/prod",
            );
        }
        if segments().any(|s| s.len() > 128) {
            return Some("each '/'-separated segment is at most 128 characters");
        }
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if !v.bytes().all(|b| b == b'/' || plain(b)) {
            return Some(
                "only A-Z, a-z, 0-9, '-', '_', '.' and '/' between segments; no '%' escapes, \
                 '\\', spaces or non-ASCII look-alikes: write the path in plain ASCII, e.g. \
                 coffer/prod",
            );
        }
        None
    }

    /// The path as given (possibly empty).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for BasePath {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BasePath::new(s)
    }
}

impl TryFrom<String> for BasePath {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BasePath::new(s)
    }
}

impl From<BasePath> for String {
    fn from(p: BasePath) -> String {
        p.0
    }
}

impl fmt::Display for BasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The compression of a records part, which decides its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (RFC 1952): `.csv.gz`, readable by every tool a customer has; the default.
    Gzip,
    /// Zstandard (RFC 8878): `.csv.zst`, smaller and several times faster to write and read.
    Zstd,
}

impl Compression {
    /// File extension including the CSV part, e.g. `csv.gz`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "csv.gz",
            Compression::Zstd => "csv.zst",
        }
    }

    /// The `Content-Type` of a part.
    pub fn content_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
        }
    }

    /// The compression of the records part at `key`, from its extension.
    pub fn of_key(key: &str) -> Option<Compression> {
        [Compression::Gzip, Compression::Zstd]
            .into_iter()
            .find(|c| key.ends_with(&format!(".{}", c.extension())))
    }

    /// The name used in settings and the manifest (`gzip`, `zstd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?} (gzip or zstd)")),
        }
    }
}

/// A bucket name that follows S3's naming rules: 3 to 63 characters of `a-z 0-9 . -`, starting
/// and ending with a letter or digit, no `..`, not an IP address, none of the reserved prefixes
/// and suffixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketName(String);

impl BucketName {
    const RULE: &'static str = "3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending \
                                with a letter or digit, no '..', not an IP address, not starting \
                                with 'xn--' or 'sthree-', not ending with '-s3alias' or '--ol-s3'; \
                                a folder inside the bucket is the base path, not part of the \
                                bucket name";

    /// Validates a bucket name.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if Self::valid(&value) {
            Ok(BucketName(value))
        } else {
            Err(IdError::new("bucket name", &value, Self::RULE))
        }
    }

    fn valid(v: &str) -> bool {
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        (3..=63).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && edge(v.as_bytes().first())
            && edge(v.as_bytes().last())
            && !v.contains("..")
            && v.parse::<std::net::Ipv4Addr>().is_err()
            && !v.starts_with("xn--")
            && !v.starts_with("sthree-")
            && !v.ends_with("-s3alias")
            && !v.ends_with("--ol-s3")
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for BucketName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BucketName::new(s)
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of everything Coffer writes for one tenant: `{base_path}/{tenant}` (without a
/// leading `/` when the base path is empty). A tenant's role session is narrowed to it.
pub fn tenant_prefix(base: &BasePath, tenant: &TenantId) -> String {
    if base.as_str().is_empty() {
        tenant.to_string()
    } else {
        format!("{base}/{tenant}")
    }
}

/// The prefix of everything Coffer writes for one org of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPrefix {
    prefix: String,
}

impl OrgPrefix {
    /// `{base_path}/{tenant}/{org}` (without a leading `/` when the base path is empty).
    pub fn new(base: &BasePath, tenant: &TenantId, org: &OrgId) -> Self {
        OrgPrefix {
            prefix: format!("{}/{org}", tenant_prefix(base, tenant)),
        }
    }

    /// The prefix itself, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// `.../restores/{restore_id}/report.csv.gz`: the report of one restore (every record, its
    /// outcome, and Salesforce's error for those that failed).
    pub fn restore_report_key(&self, restore: &uuid::Uuid) -> String {
        format!("{}/restores/{restore}/report.csv.gz", self.prefix)
    }

    /// `.../backups/{backup_id}/`: everything of one backup.
    pub fn backup_prefix(&self, backup: &BackupId) -> String {
        format!("{}/backups/{backup}/", self.prefix)
    }

    /// `.../backups/{backup_id}/manifest.json`.
    pub fn manifest_key(&self, backup: &BackupId) -> String {
        format!("{}manifest.json", self.backup_prefix(backup))
    }

    /// `.../backups/{backup_id}/records/{sobject}/`: every part of one object.
    pub fn records_prefix(&self, backup: &BackupId, sobject: &SObjectName) -> String {
        format!("{}records/{sobject}/", self.backup_prefix(backup))
    }

    /// `.../backups/{backup_id}/records/{sobject}/part-{nnnnn}.csv.gz`; parts count from 1.
    pub fn records_part_key(
        &self,
        backup: &BackupId,
        sobject: &SObjectName,
        part: u32,
        compression: Compression,
    ) -> String {
        format!(
            "{}part-{part:05}.{}",
            self.records_prefix(backup, sobject),
            compression.extension()
        )
    }

    /// The part number of a records part key made by [`OrgPrefix::records_part_key`]
    /// (`.../part-00012.csv.gz` -> 12); `None` for any other key.
    pub fn part_of_key(key: &str) -> Option<u32> {
        let name = key.rsplit('/').next()?;
        let digits = name.strip_prefix("part-")?.split('.').next()?;
        digits.parse().ok()
    }

    /// `.../files/`: the content-addressed file bodies of the org, shared by all its backups.
    pub fn files_prefix(&self) -> String {
        format!("{}/files/", self.prefix)
    }

    /// `.../files/{sha256[0..2]}/{sha256}`: where a file body with this SHA-256 (64 lowercase hex
    /// characters) is stored, once per org. The two-character directory spreads keys over
    /// prefixes.
    pub fn file_key(&self, sha256_hex: &str) -> Result<String, IdError> {
        let valid = sha256_hex.len() == 64
            && sha256_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(IdError::new(
                "sha-256",
                sha256_hex,
                "64 lowercase hexadecimal characters",
            ));
        }
        Ok(format!(
            "{}{}/{sha256_hex}",
            self.files_prefix(),
            &sha256_hex[..2]
        ))
    }

    /// `.../backups/{backup_id}/staging/{sobject}/{record_id}`: where a file body too large to
    /// hold in memory is written while its SHA-256 is computed, before it is copied to its
    /// [`OrgPrefix::file_key`]. `record_id` must be a Salesforce id (15 or 18 ASCII letters and
    /// digits).
    pub fn file_staging_key(
        &self,
        backup: &BackupId,
        sobject: &SObjectName,
        record_id: &str,
    ) -> Result<String, IdError> {
        let record_id = RecordId::new(record_id)?;
        Ok(format!(
            "{}staging/{sobject}/{record_id}",
            self.backup_prefix(backup)
        ))
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.backups", "0day", &"a".repeat(63)] {
            assert!(BucketName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "-bucket",
            "bucket-",
            "a..b",
            "192.168.1.1",
            "xn--bucket",
            "sthree-b",
            "b-s3alias",
            "b--ol-s3",
            "bucket/../other",
            "buck\u{0}et",
            "bucket name",
        ] {
            let err = BucketName::new(bad).expect_err(bad);
            assert!(err.to_string().contains("3 to 63"), "{err}");
        }
    }

    #[test]
    fn the_tenant_prefix_is_the_start_of_every_org_prefix() {
        let tenant = TenantId::new("acme").expect("id");
        let org = OrgId::new("00D000000000001AAA").expect("id");
        for base in ["", "coffer/prod"] {
            let base = BasePath::new(base).expect("base");
            let t = tenant_prefix(&base, &tenant);
            assert!(
                OrgPrefix::new(&base, &tenant, &org)
                    .as_str()
                    .starts_with(&format!("{t}/"))
            );
        }
        assert_eq!(tenant_prefix(&BasePath::default(), &tenant), "acme");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, OrgId, BackupId, SObjectName) {
        (
            TenantId::new("acme").unwrap(),
            OrgId::new("00D000000000001AAA").unwrap(),
            "0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e".parse().unwrap(),
            SObjectName::new("Account").unwrap(),
        )
    }

    #[test]
    fn record_keys_follow_the_documented_layout() {
        let (t, o, b, s) = ids();
        let p = OrgPrefix::new(&BasePath::new("coffer/prod").unwrap(), &t, &o);
        assert_eq!(
            p.records_part_key(&b, &s, 1, Compression::Gzip),
            "coffer/prod/acme/00D000000000001AAA/backups/0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e/records/Account/part-00001.csv.gz"
        );
        assert_eq!(
            p.manifest_key(&b),
            "coffer/prod/acme/00D000000000001AAA/backups/0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e/manifest.json"
        );
        let zstd = p.records_part_key(&b, &s, 2, Compression::Zstd);
        assert!(zstd.ends_with("/records/Account/part-00002.csv.zst"));
        assert_eq!(Compression::of_key(&zstd), Some(Compression::Zstd));
        assert_eq!(
            Compression::of_key(&p.records_part_key(&b, &s, 2, Compression::Gzip)),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::of_key(&p.manifest_key(&b)), None);
        assert_eq!("zstd".parse(), Ok(Compression::Zstd));
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn file_keys_are_content_addressed_under_a_two_character_directory() {
        let (t, o, b, s) = ids();
        let p = OrgPrefix::new(&BasePath::new("coffer/prod").unwrap(), &t, &o);
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(
            p.file_key(sha).unwrap(),
            format!("coffer/prod/acme/00D000000000001AAA/files/9f/{sha}")
        );
        assert!(p.file_key(sha).unwrap().starts_with(&p.files_prefix()));
        for bad in [
            "",
            "9f86",
            &sha.to_uppercase(),
            &format!("{}/", &sha[..63]),
            &format!("../{}", &sha[..61]),
        ] {
            assert!(p.file_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            p.file_staging_key(&b, &s, "00P5g00000AbCdEAAA").unwrap(),
            "coffer/prod/acme/00D000000000001AAA/backups/0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e/staging/Account/00P5g00000AbCdEAAA"
        );
        for bad in [
            "",
            "00P5g00000AbCdE/",
            "../../files/xx/yy",
            "00P5g00000AbCdEAA",
        ] {
            assert!(p.file_staging_key(&b, &s, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_base_path_has_no_leading_slash() {
        let (t, o, b, s) = ids();
        let p = OrgPrefix::new(&BasePath::default(), &t, &o);
        assert!(
            p.records_part_key(&b, &s, 12, Compression::Gzip)
                .starts_with("acme/00D")
        );
        assert!(
            p.records_part_key(&b, &s, 12, Compression::Gzip)
                .ends_with("part-00012.csv.gz")
        );
        assert_eq!(
            OrgPrefix::part_of_key(&p.records_part_key(&b, &s, 120_003, Compression::Zstd)),
            Some(120_003)
        );
        assert_eq!(OrgPrefix::part_of_key(&p.manifest_key(&b)), None);
    }

    #[test]
    fn a_refused_base_path_names_the_fix() {
        for (bad, fix) in [
            ("/coffer", "drop the leading '/'"),
            ("coffer/", "drop the trailing '/'"),
            ("coffer//prod", "single '/'"),
            ("coffer/../other-tenant", "'..' segments are not allowed"),
            ("%2e%2e/x", "no '%' escapes"),
            ("coffer\u{0}/x", "control characters"),
            ("coffer\u{1b}[31m", "control characters"),
            ("co\u{2024}\u{2024}/x", "non-ASCII look-alikes"),
            ("coffer\\prod", "plain ASCII"),
        ] {
            let err = BasePath::new(bad).expect_err(bad).to_string();
            assert!(err.contains(fix), "{bad:?}: {err}");
            assert!(!err.contains('\u{0}') && !err.contains('\u{1b}'), "{err}");
        }
    }

    #[test]
    fn base_paths_that_escape_are_rejected() {
        for bad in [
            "/abs", "a/../b", "..", "a//b", "a/", "a\nb", "a\\b", "a/./b", "a%2Fb",
        ] {
            assert!(BasePath::new(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["", "coffer", "coffer/prod-1", "a.b/c_d"] {
            assert!(BasePath::new(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
