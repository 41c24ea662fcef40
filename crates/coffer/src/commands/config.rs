//! `coffer config check`: the effective configuration, every key with its value and where the
//! value came from (flag, env, file or default); secrets shown as `[redacted]`.
//!
//! Loading already refused unknown keys and bad values from the file and the environment (the
//! command never gets here then, and exits 1 with the key's name); this command also checks the
//! service flags given to it and the envelope key the configuration points at.

use anyhow::bail;
use clap::CommandFactory;
use secrecy::ExposeSecret;
use serde_json::json;

use super::{Context, print_json, say};
use crate::args::Services;
use crate::config::{Resolved, Source};

/// Configuration commands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Load the file and the environment, check every value, and print the effective
    /// configuration. Exits 1 (naming the key) when a value is invalid.
    Check(CheckArgs),
}

/// `config check` options.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    services: Services,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One key as printed.
struct Shown {
    key: &'static str,
    env: &'static str,
    value: Option<String>,
    source: Source,
    via: Option<String>,
}

/// Runs a config command.
pub fn run(cmd: ConfigCommand, context: Context<'_>) -> anyhow::Result<()> {
    let ConfigCommand::Check(args) = cmd;
    let shown = effective(context)?;
    args.services.envelope_key()?;
    match args.json {
        true => print_json(&as_json(context, &shown)),
        false => {
            print_plain(context, &shown);
            Ok(())
        }
    }
}

/// Every key, flags given to `config check` taking over from what loading resolved.
fn effective(context: Context<'_>) -> anyhow::Result<Vec<Shown>> {
    let flags = flags_given(context);
    let mut shown = Vec::new();
    let mut problems = Vec::new();
    for resolved in &context.config.keys {
        let key = resolved.key;
        let (value, source, via) = match flags.iter().find(|f| f.env == key.env) {
            Some(Given { flag, value, .. }) => {
                if let Err(reason) = (key.check)(value) {
                    problems.push(format!("{}: {reason} (from --{flag})", key.name));
                }
                (Some(value.clone()), Source::Flag, None)
            }
            None => (
                resolved
                    .value
                    .as_ref()
                    .map(|v| v.expose_secret().to_owned()),
                resolved.source,
                resolved.via.clone(),
            ),
        };
        shown.push(Shown {
            key: key.name,
            env: key.env,
            value: value.map(|v| redact(resolved, v)),
            source,
            via,
        });
    }
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(shown)
}

fn redact(resolved: &Resolved, value: String) -> String {
    match resolved.key.secret {
        true => "[redacted]".to_owned(),
        false => value,
    }
}

/// A flag given to `config check` on the command line.
struct Given {
    /// The environment variable the flag stands in for.
    env: String,
    /// The flag's long name.
    flag: String,
    /// Its value.
    value: String,
}

/// Every flag given on the command line to `config check` that stands for a key.
fn flags_given(context: Context<'_>) -> Vec<Given> {
    let Some(matches) = context
        .matches
        .subcommand_matches("config")
        .and_then(|m| m.subcommand_matches("check"))
    else {
        return Vec::new();
    };
    let mut command = crate::Cli::command();
    command.build();
    let Some(check) = command
        .find_subcommand("config")
        .and_then(|c| c.find_subcommand("check"))
    else {
        return Vec::new();
    };
    check
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            let id = arg.get_id().as_str();
            (matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .then_some(())?;
            let value = matches.get_raw(id)?.next()?.to_str()?.to_owned();
            let flag = arg.get_long()?.to_owned();
            Some(Given { env, flag, value })
        })
        .collect()
}

fn as_json(context: Context<'_>, shown: &[Shown]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = shown
        .iter()
        .map(|s| {
            json!({
                "key": s.key,
                "env": s.env,
                "value": s.value,
                "source": s.source.as_str(),
                "via": s.via,
            })
        })
        .collect();
    json!({
        "file": context.config.file.as_ref().map(|p| p.display().to_string()),
        "valid": true,
        "keys": keys,
    })
}

fn print_plain(context: Context<'_>, shown: &[Shown]) {
    match &context.config.file {
        Some(path) => say(format!("configuration file: {}", path.display())),
        None => say("configuration file: none (--config PATH or COFFER_CONFIG)"),
    }
    let width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in shown {
        let value = s.value.as_deref().unwrap_or("(unset)");
        let source = match &s.via {
            Some(via) => format!("{} ({via})", s.source.as_str()),
            None => s.source.as_str().to_owned(),
        };
        say(format!("{:width$}  {value}  [{source}]", s.key));
    }
    say("configuration is valid");
}
