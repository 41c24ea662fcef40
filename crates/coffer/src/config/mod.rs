//! Configuration: one TOML file (`--config PATH` or `COFFER_CONFIG`), environment variables, and
//! command-line flags, in that order of increasing precedence (`docs/configuration.md`).
//!
//! [`load`] runs before clap: it reads the file, resolves every key (environment, `*_FILE`
//! secrets, file, default) and checks every value that is not a default, so a bad value stops
//! any command at start with the key's name. [`apply`] then gives each flag whose key the file
//! (or a `*_FILE` variable) sets that value as its default: clap's own order (flag, then
//! environment, then default) does the rest, and no environment variable is ever written.

mod file;
pub mod keys;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

pub use keys::{KEYS, Key};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "COFFER_CONFIG";

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// The environment (the key's variable, or its `*_FILE` variable for a secret).
    Env,
    /// The configuration file.
    File,
    /// The built-in default.
    Default,
}

impl Source {
    /// `flag`, `env`, `file` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// One key's effective value before flags.
#[derive(Debug)]
pub struct Resolved {
    /// The key.
    pub key: &'static Key,
    /// Its value (unset when it has no default and nothing sets it).
    pub value: Option<SecretString>,
    /// Where the value came from.
    pub source: Source,
    /// For a value read from a file: which variable or key named that file.
    pub via: Option<String>,
}

/// The loaded configuration.
#[derive(Debug)]
pub struct Loaded {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Every key of [`KEYS`], in order.
    pub keys: Vec<Resolved>,
}

/// Reads the file named by `--config` or `COFFER_CONFIG` (if any) and resolves and checks every
/// key against the process's environment.
pub fn load() -> anyhow::Result<Loaded> {
    let path = config_path(std::env::args_os().skip(1))
        .or_else(|| env_value(CONFIG_ENV).map(PathBuf::from));
    load_from(path, &|name| env_value(name))
}

/// As [`load`], with the file and the environment given.
pub fn load_from(
    file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Loaded> {
    let values = match &file {
        Some(path) => file::read(path)?,
        None => file::FileValues::new(),
    };
    let shown = file.as_ref().map(|p| p.display().to_string());
    let keys = KEYS
        .iter()
        .map(|key| resolve(key, &values, shown.as_deref(), env))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let problems: Vec<String> = keys
        .iter()
        .filter_map(|r| check(r, shown.as_deref()).err())
        .collect();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(Loaded { file, keys })
}

/// A set, non-empty environment variable (empty counts as unset, as clap does).
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `--config PATH` or `--config=PATH` among the arguments (before any `--`).
fn config_path(args: impl Iterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.take_while(|a| a != "--");
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn resolve(
    key: &'static Key,
    file: &file::FileValues,
    shown: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Resolved> {
    let found = |value: String, source, via: Option<String>| Resolved {
        key,
        value: Some(SecretString::from(value)),
        source,
        via,
    };
    if let Some(value) = env(key.env) {
        return Ok(found(value, Source::Env, None));
    }
    if let Some(var) = key.env_file()
        && let Some(path) = env(&var)
    {
        return Ok(found(read_secret(&var, &path)?, Source::Env, Some(var)));
    }
    let inline = file.get(key.name);
    let from_file = key.file_key.and_then(|k| file.get(k).map(|p| (k, p)));
    match (inline, from_file) {
        (Some(_), Some((file_key, _))) => bail!(
            "{}: set both {} and {file_key} in {}; keep one",
            key.name,
            key.name,
            shown.unwrap_or("the file")
        ),
        (Some(value), None) => Ok(found(value.clone(), Source::File, None)),
        (None, Some((file_key, path))) => Ok(found(
            read_secret(file_key, path)?,
            Source::File,
            Some(file_key.to_owned()),
        )),
        (None, None) => Ok(Resolved {
            key,
            value: key.default.map(|d| SecretString::from(d.to_owned())),
            source: Source::Default,
            via: None,
        }),
    }
}

/// A secret read from a file, without its trailing newline.
fn read_secret(named_by: &str, path: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{named_by}: cannot read the secret file {path}"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Checks one value; the error names the key and where the value came from, and quotes the
/// value unless it is a secret.
fn check(resolved: &Resolved, file: Option<&str>) -> Result<(), String> {
    let (Some(value), Source::Env | Source::File | Source::Flag) =
        (&resolved.value, resolved.source)
    else {
        return Ok(());
    };
    let key = resolved.key;
    let value = value.expose_secret();
    let Err(reason) = (key.check)(value) else {
        return Ok(());
    };
    let shown = match key.secret {
        true => String::new(),
        false => format!("{value:?} "),
    };
    let origin = match (resolved.source, &resolved.via) {
        (Source::Env, Some(var)) => format!(" (from the file {var} names)"),
        (Source::Env, None) => format!(" (from {})", key.env),
        (Source::File, _) => format!(" (in {})", file.unwrap_or("the configuration file")),
        _ => String::new(),
    };
    Err(format!("{}: {shown}{reason}{origin}", key.name))
}

/// Gives every flag whose key is set by the file or a `*_FILE` variable that value as its
/// default, throughout the command tree (flags and plain environment variables still win).
pub fn apply(command: clap::Command, loaded: &Loaded) -> clap::Command {
    apply_at(command, &[], loaded)
}

fn apply_at(mut command: clap::Command, path: &[&str], loaded: &Loaded) -> clap::Command {
    let args: Vec<(clap::Id, OsString)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), a.get_env()?.to_owned())))
        .collect();
    for (id, env) in args {
        let Some(resolved) = loaded
            .keys
            .iter()
            .find(|r| r.key.env == env && r.key.applies_to(path))
        else {
            continue;
        };
        let (Some(value), Source::File | Source::Env) = (&resolved.value, resolved.source) else {
            continue;
        };
        let value = value.expose_secret().to_owned();
        let secret = resolved.key.secret;
        command = command.mut_arg(id, |a| {
            let a = a.default_value(value).required(false);
            match secret {
                true => a.hide_default_value(true),
                false => a,
            }
        });
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let mut sub_path: Vec<&str> = path.to_vec();
        sub_path.push(&name);
        command = command.mut_subcommand(&name, |s| apply_at(s, &sub_path, loaded));
    }
    command
}

#[cfg(test)]
mod tests;
