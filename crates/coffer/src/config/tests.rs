//! The key table, the file's structs, the documentation and the flags agree; loading resolves
//! in the documented order and names the key of a bad value.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use clap::CommandFactory;
use secrecy::ExposeSecret;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn write_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("coffer-config-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write a temporary file");
    path
}

fn value_of(loaded: &Loaded, name: &str) -> (Option<String>, Source) {
    let r = loaded
        .keys
        .iter()
        .find(|r| r.key.name == name)
        .expect("a key of the table");
    (
        r.value.as_ref().map(|v| v.expose_secret().to_owned()),
        r.source,
    )
}

#[test]
fn every_key_of_the_file_is_in_the_table_and_the_reverse() {
    let from_struct: BTreeSet<String> = file::struct_keys().into_iter().collect();
    let from_table: BTreeSet<String> = KEYS
        .iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.file_key))
        .map(str::to_owned)
        .collect();
    assert_eq!(from_struct, from_table);
}

#[test]
fn every_key_of_the_file_is_documented_with_its_variable() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let row = |name: &str| {
        doc.lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .map(str::to_owned)
    };
    let mut missing = Vec::new();
    for name in file::struct_keys() {
        match (row(&name), KEYS.iter().find(|k| k.name == name)) {
            (None, _) => missing.push(name),
            (Some(line), Some(key)) if !line.contains(&format!("`{}`", key.env)) => {
                missing.push(format!("{name} (its variable {})", key.env))
            }
            (Some(line), Some(key)) if key.file_key.is_some() => {
                let var = key.env_file().unwrap_or_default();
                if !doc.contains(&format!("`{var}`")) {
                    missing.push(format!("{name} (its file variable {var})"));
                }
                drop(line);
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no row `| \\`key\\` |` for: {missing:?}"
    );
}

#[test]
fn the_documented_example_is_valid() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").expect("its end")];
    let values = file::parse(example).expect("the example parses");
    for (name, value) in &values {
        let key = KEYS
            .iter()
            .find(|k| k.name == name || k.file_key == Some(name.as_str()))
            .expect("a key");
        if key.name == name {
            assert_eq!((key.check)(value), Ok(()), "{name}");
        }
    }
}

/// The Kubernetes ConfigMap's `coffer.toml` uses only keys this binary knows, with valid values.
#[test]
fn the_kubernetes_config_map_is_a_valid_file() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/k8s/configmap.yaml"
    ))
    .expect("deploy/k8s/configmap.yaml");
    let block: Vec<&str> = yaml
        .lines()
        .skip_while(|l| l.trim() != "coffer.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert!(!block.is_empty(), "no coffer.toml in the ConfigMap");
    let values = file::parse(&block.join("\n")).expect("the ConfigMap's coffer.toml parses");
    for (name, value) in &values {
        if let Some(key) = KEYS.iter().find(|k| k.name == name) {
            assert_eq!((key.check)(value), Ok(()), "{name}");
        }
    }
    assert_eq!(values.get("s3.endpoint").map(String::as_str), Some("aws"));
}

/// Every flag reading a key's variable, in the key's scope, has the key's default.
#[test]
fn defaults_of_the_table_are_the_flags_defaults() {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, problems: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(key) = KEYS.iter().find(|k| k.env == env && k.applies_to(&p)) else {
                if env != CONFIG_ENV {
                    problems.push(format!(
                        "{} --{}: {env} is no key",
                        path.join(" "),
                        arg.get_id()
                    ));
                }
                continue;
            };
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let expected: Vec<String> = key.default.into_iter().map(str::to_owned).collect();
            if default != expected {
                problems.push(format!(
                    "{}: flag default {default:?}, table {expected:?}",
                    key.name
                ));
            }
        }
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_owned());
            walk(sub, path, problems);
            path.pop();
        }
    }
    let mut problems = Vec::new();
    walk(&crate::Cli::command(), &mut Vec::new(), &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn defaults_pass_their_own_checks() {
    for key in KEYS {
        if let Some(d) = key.default {
            assert_eq!((key.check)(d), Ok(()), "{}", key.name);
        }
    }
}

#[test]
fn unknown_keys_are_refused_by_their_dotted_name() {
    let err = file::parse("[worker]\nconcurrency = 2\nbogus_key = 1\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("worker.bogus_key"), "{msg}");
    let err = file::parse("[nosuchsection]\na = 1\n").unwrap_err();
    assert!(format!("{err:#}").contains("nosuchsection"), "{err:#}");
}

#[test]
fn a_wrongly_typed_value_names_its_key_without_quoting_the_line() {
    let err = file::parse("[worker]\nconcurrency = \"four\"\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("worker.concurrency"), "{msg}");
    let err = file::parse("[database]\nurl = \"mysql://u:hunter2@h/db\n").unwrap_err();
    assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
}

#[test]
fn a_bad_value_names_its_key_and_the_file() {
    let path = write_file("bad.toml", "[worker]\ntask_lease = \"5x\"\n");
    let err = load_from(Some(path.clone()), &env_of(&[])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("worker.task_lease: \"5x\" is not a duration"),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    let err = load_from(None, &env_of(&[("COFFER_TASK_LEASE", "soon")])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("worker.task_lease") && msg.contains("COFFER_TASK_LEASE"),
        "{msg}"
    );
}

#[test]
fn a_bad_secret_is_named_but_not_shown() {
    let err = load_from(None, &env_of(&[("COFFER_DATABASE_URL", "hunter2")])).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("database.url") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn flag_then_env_then_file_then_default() {
    let path = write_file(
        "order.toml",
        "vendor = \"from-file\"\n[worker]\ntask_lease = \"2m\"\nconcurrency = 3\n",
    );
    let loaded = load_from(Some(path), &env_of(&[("COFFER_TASK_LEASE", "90s")])).expect("load");
    assert_eq!(
        value_of(&loaded, "worker.task_lease"),
        (Some("90s".into()), Source::Env)
    );
    assert_eq!(
        value_of(&loaded, "worker.concurrency"),
        (Some("3".into()), Source::File)
    );
    assert_eq!(
        value_of(&loaded, "vendor"),
        (Some("from-file".into()), Source::File)
    );
    assert_eq!(
        value_of(&loaded, "scheduler.tick"),
        (Some("10s".into()), Source::Default)
    );

    let cli = |args: &[&str]| {
        let matches = apply(crate::Cli::command(), &loaded)
            .try_get_matches_from(args)
            .expect("parse");
        let sub = matches
            .subcommand_matches("worker")
            .expect("worker")
            .clone();
        (
            sub.get_one::<u16>("concurrency").copied(),
            sub.get_one::<String>("vendor").cloned(),
        )
    };
    assert_eq!(
        cli(&["coffer", "worker"]),
        (Some(3), Some("from-file".into()))
    );
    assert_eq!(
        cli(&["coffer", "worker", "--concurrency", "5", "--vendor", "v"]),
        (Some(5), Some("v".into()))
    );
}

#[test]
fn secrets_come_from_files_named_in_the_file_or_the_environment() {
    let secret = write_file("db-url", "mysql://u:p@127.0.0.1:3306/db\n");
    let path = write_file(
        "secret.toml",
        &format!("[database]\nurl_file = \"{}\"\n", secret.display()),
    );
    let loaded = load_from(Some(path), &env_of(&[])).expect("load");
    let r = loaded
        .keys
        .iter()
        .find(|r| r.key.name == "database.url")
        .expect("key");
    assert_eq!(
        r.value
            .as_ref()
            .map(|v| v.expose_secret().to_owned())
            .as_deref(),
        Some("mysql://u:p@127.0.0.1:3306/db")
    );
    assert_eq!(
        (r.source, r.via.as_deref()),
        (Source::File, Some("database.url_file"))
    );

    let secret_path = secret.display().to_string();
    let loaded = load_from(None, &env_of(&[("COFFER_AMQP_URL_FILE", &secret_path)])).expect("load");
    assert_eq!(value_of(&loaded, "amqp.url").1, Source::Env);

    let both = write_file(
        "both.toml",
        &format!("[database]\nurl = \"mysql://a@b/c\"\nurl_file = \"{secret_path}\"\n"),
    );
    let err = load_from(Some(both), &env_of(&[])).unwrap_err();
    assert!(format!("{err:#}").contains("database.url_file"), "{err:#}");
}

#[test]
fn the_config_flag_is_found_before_parsing() {
    let args = |a: &[&str]| config_path(a.iter().map(OsString::from));
    assert_eq!(
        args(&["--config", "/a.toml", "worker"]),
        Some(PathBuf::from("/a.toml"))
    );
    assert_eq!(
        args(&["worker", "--config=/b.toml"]),
        Some(PathBuf::from("/b.toml"))
    );
    assert_eq!(args(&["worker", "--", "--config", "/c"]), None);
}
