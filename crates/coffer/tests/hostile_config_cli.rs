//! Configuration-side hostile input: bucket names and base paths that try to leave the tenant's
//! prefix (`..`, a leading `/`, `//`, control characters, `%2e%2e`, look-alike characters) are
//! refused by `coffer tenant create` and `coffer storage set` with a message that names the
//! fix, and nothing reaches the catalog; a plain value is then accepted.

mod common;

use coffer_core::TenantId;
use coffer_testkit::TestEnv;

use common::coffer;

/// Hostile base paths and what the refusal must say to fix them.
const BASE_PATHS: &[(&str, &str)] = &[
    ("../globex", "'..' segments are not allowed"),
    ("coffer/../../globex", "'..' segments are not allowed"),
    ("/coffer", "drop the leading '/'"),
    ("coffer//prod", "single '/'"),
    ("coffer/", "drop the trailing '/'"),
    ("coffer\u{1}prod", "control characters"),
    ("coffer\tprod", "control characters"),
    ("%2e%2e/globex", "no '%' escapes"),
    ("coffer\u{2024}\u{2024}/x", "non-ASCII look-alikes"),
];

/// Hostile bucket names; each refusal names S3's rule and where a folder goes instead.
const BUCKETS: &[&str] = &[
    "bucket/../other",
    "/bucket",
    "bucket//x",
    "bucket\u{1}",
    "a..b",
    "B\u{430}ckups",
    "..",
];

fn refused(out: &std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{what}: the error echoes control characters: {stderr:?}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_create_and_storage_set_refuse_escaping_buckets_and_base_paths_naming_the_fix()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let create = |bucket: &str, base: &str| {
        let mut cmd = coffer(&env);
        cmd.args(["tenant", "create", "--tenant", "acme", "--bucket", bucket])
            .args(["--base-path", base]);
        cmd.output()
    };
    let set = |bucket: &str, base: &str| {
        let mut cmd = coffer(&env);
        cmd.args(["storage", "set", "--tenant", "acme", "--bucket", bucket])
            .args(["--base-path", base, "--sse", "sse-s3"])
            .args(["--role-arn", "arn:aws:iam::123456789012:role/coffer"]);
        cmd.output()
    };

    for (base, fix) in BASE_PATHS {
        for (command, out) in [
            ("tenant create", create(&env.bucket, base)?),
            ("storage set", set(&env.bucket, base)?),
        ] {
            let stderr = refused(&out, &format!("{command} --base-path {base:?}"));
            assert!(
                stderr.contains("invalid base path") && stderr.contains(fix),
                "{command} --base-path {base:?}: {stderr}"
            );
        }
    }
    for bucket in BUCKETS {
        for (command, out) in [
            ("tenant create", create(bucket, "")?),
            ("storage set", set(bucket, "")?),
        ] {
            let stderr = refused(&out, &format!("{command} --bucket {bucket:?}"));
            assert!(
                stderr.contains("invalid bucket name")
                    && stderr.contains("3 to 63 characters")
                    && stderr.contains("is the base path"),
                "{command} --bucket {bucket:?}: {stderr}"
            );
        }
    }
    let acme = TenantId::new("acme")?;
    assert!(
        env.catalog.tenant(&acme).await?.is_none(),
        "a refused command wrote the tenant"
    );

    // The same commands with plain values work.
    let out = create(&env.bucket, "coffer/prod")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tenant = env.catalog.tenant(&acme).await?.expect("tenant created");
    assert_eq!(tenant.storage.settings.base_path.as_str(), "coffer/prod");
    assert_eq!(tenant.storage.settings.bucket, env.bucket);
    env.cleanup().await
}
