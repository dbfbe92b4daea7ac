//! The `--config FILE` YAML file (k3s's convention): keys are long flag names, values are
//! strings, numbers, booleans or lists. Its flags are placed before the command line's own, so
//! flags given on the command line win.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {source}")]
    Yaml { path: String, source: serde_yaml::Error },
    #[error("config file {path}: top level must be a mapping of flag names to values")]
    NotAMapping { path: String },
    #[error("config file {path}: key {key:?} has a value that is not a string, number, boolean or list of those")]
    BadValue { path: String, key: String },
}

/// The default config file, read when it exists and `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/orch/config.yaml";

/// Turns the config file at `path` into command-line flags.
pub fn flags_from_file(path: &Path) -> Result<Vec<String>, ConfigFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: p.clone(), source })?;
    flags_from_yaml(&text, &p)
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn flags_from_yaml(text: &str, path: &str) -> Result<Vec<String>, ConfigFileError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| ConfigFileError::Yaml { path: path.into(), source })?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err(ConfigFileError::NotAMapping { path: path.into() }),
    };
    let mut flags = Vec::new();
    for (k, v) in map {
        let key = scalar(&k).ok_or_else(|| ConfigFileError::NotAMapping { path: path.into() })?;
        let bad = || ConfigFileError::BadValue { path: path.into(), key: key.clone() };
        match &v {
            serde_yaml::Value::Bool(true) => flags.push(format!("--{key}")),
            serde_yaml::Value::Bool(false) => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    flags.push(format!("--{key}={}", scalar(item).ok_or_else(bad)?));
                }
            }
            other => flags.push(format!("--{key}={}", scalar(other).ok_or_else(bad)?)),
        }
    }
    Ok(flags)
}

/// Where `--config` points in `args`, if anywhere.
pub fn config_path(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(v.to_string());
        }
    }
    None
}

/// Inserts the config file's flags right after the subcommand (the first non-flag argument),
/// so that the command line's own flags, which come later, override them. Only `server` and
/// `agent` read the file (as k3s's): `orch token`, `orch kubectl`, … are left alone.
pub fn merge(args: Vec<String>, file_flags: Vec<String>) -> Vec<String> {
    if file_flags.is_empty() {
        return args;
    }
    let mut skip_value = false;
    let pos = args.iter().enumerate().skip(1).find_map(|(i, a)| {
        if skip_value {
            skip_value = false;
            return None;
        }
        if a == "--config" || a == "--data-dir" {
            skip_value = true;
            return None;
        }
        (!a.starts_with('-')).then_some(i + 1)
    });
    let Some(pos) = pos.filter(|p| matches!(args[p - 1].as_str(), "server" | "agent")) else {
        return args;
    };
    let mut out = args[..pos].to_vec();
    out.extend(file_flags);
    out.extend_from_slice(&args[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_becomes_flags() {
        let flags = flags_from_yaml("https-listen-port: 7443\ndebug: true\nquiet: false\ntls-san: [a.example, 10.0.0.1]\n", "x").unwrap();
        assert_eq!(flags, ["--https-listen-port=7443", "--debug", "--tls-san=a.example", "--tls-san=10.0.0.1"]);
    }

    #[test]
    fn file_flags_go_after_the_subcommand_before_cli_flags() {
        let args: Vec<String> = ["orch", "--config", "c.yaml", "server", "--https-listen-port=9"].iter().map(|s| s.to_string()).collect();
        let merged = merge(args, vec!["--https-listen-port=7443".into()]);
        assert_eq!(merged, ["orch", "--config", "c.yaml", "server", "--https-listen-port=7443", "--https-listen-port=9"]);
    }

    #[test]
    fn only_server_and_agent_read_the_file() {
        for command in ["kubectl", "token", "check-config"] {
            let args: Vec<String> = ["orch", command, "get", "pods"].iter().map(|s| s.to_string()).collect();
            assert_eq!(merge(args.clone(), vec!["--token=x".into()]), args);
        }
        let args: Vec<String> = ["orch", "agent"].iter().map(|s| s.to_string()).collect();
        assert_eq!(merge(args, vec!["--token=x".into()]), ["orch", "agent", "--token=x"]);
    }

    #[test]
    fn bad_files_are_explained() {
        assert!(matches!(flags_from_yaml("- a\n- b\n", "f"), Err(ConfigFileError::NotAMapping { .. })));
        assert!(matches!(flags_from_yaml("a: {b: 1}\n", "f"), Err(ConfigFileError::BadValue { .. })));
        assert!(matches!(flags_from_yaml("a: [\n", "f"), Err(ConfigFileError::Yaml { .. })));
    }
}
