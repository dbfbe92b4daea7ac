//! The `--config FILE` YAML file (k3s's convention): keys are long flag names, values are
//! strings, numbers, booleans or lists. Drop-ins in `FILE.d/*.yaml` follow in name order: a
//! later file's key replaces an earlier one's, and `key+:` appends to a list instead. The
//! result is placed before the command line's own flags, so flags given there win.

use std::path::{Path, PathBuf};

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

/// The files to read for the config file `main`: itself (when it exists or was asked for
/// by name) and its drop-ins `main.d/*.yaml` in name order.
pub fn files(main: &Path, explicit: bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (explicit || main.exists()).then(|| main.to_path_buf()).into_iter().collect();
    let mut drop_in = main.as_os_str().to_owned();
    drop_in.push(".d");
    let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(PathBuf::from(drop_in))
        .map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml")).collect())
        .unwrap_or_default();
    drop_ins.sort();
    out.extend(drop_ins);
    out
}

/// Turns config files (a main file and its drop-ins, in order) into command-line flags.
pub fn flags_from_files(paths: &[PathBuf]) -> Result<Vec<String>, ConfigFileError> {
    let mut merged = Vec::new();
    for path in paths {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: p.clone(), source })?;
        merge_layer(&mut merged, mapping(&text, &p)?);
    }
    to_flags(merged)
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One file's keys and values, in file order, with the file's name for errors.
type Layer = Vec<(String, serde_yaml::Value, String)>;

fn mapping(text: &str, path: &str) -> Result<Layer, ConfigFileError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| ConfigFileError::Yaml { path: path.into(), source })?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err(ConfigFileError::NotAMapping { path: path.into() }),
    };
    map.into_iter()
        .map(|(k, v)| Ok((scalar(&k).ok_or_else(|| ConfigFileError::NotAMapping { path: path.into() })?, v, path.to_string())))
        .collect()
}

/// Lays `layer` over `merged`: a key replaces the same key; `key+` appends to its list.
fn merge_layer(merged: &mut Layer, layer: Layer) {
    for (key, value, path) in layer {
        let (name, append) = match key.strip_suffix('+') {
            Some(name) => (name.to_string(), true),
            None => (key, false),
        };
        let items = |v: serde_yaml::Value| match v {
            serde_yaml::Value::Sequence(items) => items,
            other => vec![other],
        };
        match merged.iter_mut().find(|(k, _, _)| *k == name) {
            Some(slot) if append => {
                let mut list = items(std::mem::take(&mut slot.1));
                list.extend(items(value));
                *slot = (name, serde_yaml::Value::Sequence(list), path);
            }
            Some(slot) => *slot = (name, value, path),
            None => merged.push((name, value, path)),
        }
    }
}

/// The flags of one config file's text (no drop-ins).
pub fn flags_from_yaml(text: &str, path: &str) -> Result<Vec<String>, ConfigFileError> {
    let mut merged = Vec::new();
    merge_layer(&mut merged, mapping(text, path)?);
    to_flags(merged)
}

fn to_flags(merged: Layer) -> Result<Vec<String>, ConfigFileError> {
    let mut flags = Vec::new();
    for (key, v, path) in merged {
        let bad = || ConfigFileError::BadValue { path: path.clone(), key: key.clone() };
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
    fn drop_ins_replace_keys_or_append_with_a_plus() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.yaml");
        std::fs::write(&main, "node-label: [a=1]\ntls-san: [one]\nhttps-listen-port: 6443\n").unwrap();
        std::fs::create_dir_all(dir.path().join("config.yaml.d")).unwrap();
        std::fs::write(dir.path().join("config.yaml.d/20-more.yaml"), "node-label+: [c=3]\ntls-san: two\n").unwrap();
        std::fs::write(dir.path().join("config.yaml.d/10-first.yml"), "node-label+: b=2\nhttps-listen-port: 7443\n").unwrap();
        std::fs::write(dir.path().join("config.yaml.d/notes.txt"), "ignored").unwrap();
        let found = files(&main, false);
        assert_eq!(found.len(), 3);
        assert_eq!(
            flags_from_files(&found).unwrap(),
            ["--node-label=a=1", "--node-label=b=2", "--node-label=c=3", "--tls-san=two", "--https-listen-port=7443"]
        );
        // Drop-ins apply without a main file too; an explicit missing file is an error.
        std::fs::remove_file(&main).unwrap();
        assert_eq!(files(&main, false).len(), 2);
        assert!(matches!(flags_from_files(&files(&main, true)), Err(ConfigFileError::Read { .. })));
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
