//! `deploy/aws/customer-role.cloudformation.yaml` grants exactly what `coffer storage policy`
//! prints: the same statements (by Sid), actions, resources and conditions as
//! [`permission_policy`], and the trust of [`trust_policy`].
//!
//! No YAML parser is in the dependency tree, so the template is read as text: each statement is
//! the block of lines from its `Sid:` to the next one. (`cfn-lint` validates the template
//! itself.)

use coffer_core::policy::{permission_policy, trust_policy};
use serde_json::Value;

const TEMPLATE: &str = include_str!("../../../deploy/aws/customer-role.cloudformation.yaml");

/// The lines of the statement with `sid`, up to the next statement.
fn statement_block(sid: &str) -> Vec<&'static str> {
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().trim_start_matches("- ") == format!("Sid: {sid}"))
        .unwrap_or_else(|| panic!("the template has no statement {sid}"));
    lines[start..]
        .iter()
        .enumerate()
        .take_while(|(i, l)| {
            *i == 0 || !(l.contains("Sid:") || l.contains("!Ref AWS::NoValue") || is_section(l))
        })
        .map(|(_, l)| *l)
        .collect()
}

/// A resource or a top-level key (indented by at most two spaces).
fn is_section(line: &str) -> bool {
    let indent = line.len() - line.trim_start().len();
    !line.trim().is_empty() && indent <= 2
}

/// The `- service:Action` items under `Action:` (a list or a single value).
fn actions(block: &[&str]) -> Vec<String> {
    let Some(at) = block
        .iter()
        .position(|l| l.trim_start().starts_with("Action:"))
    else {
        return Vec::new();
    };
    let inline = block[at].trim_start().trim_start_matches("Action:").trim();
    if !inline.is_empty() {
        return vec![inline.to_owned()];
    }
    block[at + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("- "))
        .map(|l| l.trim_start_matches("- ").to_owned())
        .collect()
}

/// The template's spelling of a resource of the JSON policy for bucket `B` and prefix `P`.
fn templated(resource: &str) -> String {
    resource
        .replace("arn:aws:", "arn:${AWS::Partition}:")
        .replace(":::B", ":::${BucketName}")
        .replace("/P/", "/${BasePath}/")
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_template_role_policy_has_the_same_statements_as_permission_policy() {
    let policy = permission_policy("B", "P", Some("K"));
    let statements = policy["Statement"].as_array().expect("statements");
    for statement in statements {
        let sid = statement["Sid"]
            .as_str()
            .expect("every statement has a Sid");
        let block = statement_block(sid);
        let text = block.join("\n");
        assert_eq!(
            actions(&block),
            strings(&statement["Action"]),
            "actions of {sid}"
        );
        assert!(text.contains("Effect: Allow"), "{sid}: {text}");
        match sid {
            "CofferKmsKey" => assert!(
                text.contains("Resource: !If [MakeKey, !GetAtt Key.Arn, !Ref KmsKeyArn]"),
                "{sid}: {text}"
            ),
            _ => {
                let resource = templated(statement["Resource"].as_str().expect("resource"));
                assert!(
                    text.contains(&format!("Resource: !Sub \"{resource}\"")),
                    "{sid}: {resource} in {text}"
                );
            }
        }
        if let Some(condition) = statement["Condition"].as_object() {
            for (operator, keys) in condition {
                assert!(text.contains(&format!("{operator}:")), "{sid}: {operator}");
                for (key, values) in keys.as_object().expect("condition keys") {
                    assert!(text.contains(&format!("{key}:")), "{sid}: {key}");
                    for value in strings(values) {
                        let value = value.replacen('P', "${BasePath}", 1);
                        assert!(
                            text.contains(&format!("!Sub \"{value}\"")),
                            "{sid}: {value}"
                        );
                    }
                }
            }
        } else {
            assert!(
                !text.contains("Condition:"),
                "{sid} has a condition only in the template"
            );
        }
    }

    // No statement in the role policy that the JSON lacks.
    let start = TEMPLATE.find("  RolePolicy:").expect("RolePolicy");
    let end = TEMPLATE[start..]
        .find("\n  Key:")
        .map_or(TEMPLATE.len(), |e| start + e);
    let template_sids: Vec<&str> = TEMPLATE[start..end]
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("Sid: "))
        .collect();
    let json_sids: Vec<&str> = statements
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(template_sids, json_sids);
}

#[test]
fn without_a_key_the_template_drops_the_kms_statement_as_permission_policy_does() {
    let without = permission_policy("B", "P", None);
    assert!(!without.to_string().contains("CofferKmsKey"));
    let block = statement_block("CofferKmsKey").join("\n");
    let start = TEMPLATE.find("- Sid: CofferKmsKey").expect("kms statement");
    let before = &TEMPLATE[..start];
    assert!(
        before.trim_end().ends_with("- UseKms"),
        "the KMS statement is conditional"
    );
    assert!(TEMPLATE[start..].contains("- !Ref AWS::NoValue"), "{block}");
}

#[test]
fn the_template_trust_policy_is_trust_policy() {
    let trust = trust_policy("V", &["E1".to_owned(), "E2".to_owned()]);
    let statement = &trust["Statement"][0];
    let block = statement_block(statement["Sid"].as_str().expect("sid"));
    let text = block.join("\n");
    assert_eq!(actions(&block), strings(&statement["Action"]));
    assert!(text.contains("AWS: !Ref VendorPrincipalArn"), "{text}");
    assert!(text.contains("StringEquals:"), "{text}");
    assert!(text.contains("sts:ExternalId: !Ref ExternalIds"), "{text}");
    assert_eq!(
        strings(&statement["Condition"]["StringEquals"]["sts:ExternalId"]),
        ["E1", "E2"]
    );
}

#[test]
fn the_template_key_policy_lets_the_role_use_the_key_and_the_bucket_is_private() {
    let key_use = statement_block("CofferUsesTheKey");
    assert_eq!(actions(&key_use), ["kms:GenerateDataKey", "kms:Decrypt"]);
    assert!(key_use.join("\n").contains("AWS: !GetAtt Role.Arn"));
    for setting in [
        "BlockPublicAcls: true",
        "BlockPublicPolicy: true",
        "IgnorePublicAcls: true",
        "RestrictPublicBuckets: true",
        "SSEAlgorithm: aws:kms",
        "BucketKeyEnabled: true",
        "EnableKeyRotation: true",
    ] {
        assert!(TEMPLATE.contains(setting), "{setting}");
    }
    for output in ["RoleArn:", "BucketName:", "KmsKeyArn:"] {
        let outputs = &TEMPLATE[TEMPLATE.find("\nOutputs:").expect("outputs")..];
        assert!(outputs.contains(output), "{output}");
    }
}
