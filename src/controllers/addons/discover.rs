//! Which files of the manifests directory are deployed: every `*.yaml`, `*.yml` and `*.json`
//! (any case, not hidden), except those with a `<file>.skip` beside them, each named after its
//! file up to the first dot (`web.v2.yaml` → `web`): k3s's rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One manifest file to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The Addon's name: the file name up to its first dot.
    pub name: String,
    pub path: PathBuf,
}

const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// The Addon name of a file called `file`, when it is a manifest.
fn addon_name(file: &str) -> Option<&str> {
    if file.starts_with('.') {
        return None;
    }
    let (_, ext) = file.rsplit_once('.')?;
    let (name, _) = file.split_once('.')?;
    EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)).then_some(name)
}

/// The manifests among `files` (names inside one directory), sorted by file name. A name
/// two files share (`a.yaml` and `a.json`) goes to the first one; the others are returned
/// as the second value.
pub fn select(dir: &Path, files: &[String]) -> (Vec<Manifest>, Vec<PathBuf>) {
    let skipped: BTreeSet<&str> = files.iter().filter_map(|f| f.strip_suffix(".skip")).collect();
    let mut sorted: Vec<&String> = files.iter().collect();
    sorted.sort();
    let (mut chosen, mut clashes) = (Vec::<Manifest>::new(), Vec::new());
    for file in sorted {
        let Some(name) = addon_name(file).filter(|_| !skipped.contains(file.as_str())) else { continue };
        if chosen.iter().any(|m| m.name == name) {
            clashes.push(dir.join(file));
        } else {
            chosen.push(Manifest { name: name.to_string(), path: dir.join(file) });
        }
    }
    (chosen, clashes)
}

/// The names of the regular files in `dir`; none when it does not exist.
pub fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.extend(entry.file_name().to_str().map(str::to_string));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[&str]) -> (Vec<String>, Vec<PathBuf>) {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let (chosen, clashes) = select(Path::new("/m"), &files);
        (chosen.into_iter().map(|m| format!("{}={}", m.name, m.path.display())).collect(), clashes)
    }

    #[test]
    fn picks_yaml_yml_and_json_files() {
        let (chosen, clashes) = names(&["b.yml", "a.yaml", "c.json", "E.YAML", "notes.txt", ".hidden.yaml", "yaml", ".yaml", "d.yaml.bak"]);
        assert_eq!(chosen, ["E=/m/E.YAML", "a=/m/a.yaml", "b=/m/b.yml", "c=/m/c.json"]);
        assert!(clashes.is_empty());
    }

    #[test]
    fn a_skip_file_disables_its_manifest() {
        let (chosen, _) = names(&["traefik.yaml", "traefik.yaml.skip", "coredns.yaml", "coredns.skip", "x.yaml.skip"]);
        assert_eq!(chosen, ["coredns=/m/coredns.yaml"]);
    }

    #[test]
    fn names_end_at_the_first_dot_and_clashes_are_reported() {
        let (chosen, clashes) = names(&["my.app.yaml", "web.json", "web.v2.yaml"]);
        assert_eq!(chosen, ["my=/m/my.app.yaml", "web=/m/web.json"]);
        assert_eq!(clashes, [PathBuf::from("/m/web.v2.yaml")]);
    }

    #[test]
    fn lists_only_regular_files_and_a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        assert_eq!(list(dir.path()).unwrap(), ["a.yaml"]);
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
