//! `install.sh`, offline, into a throwaway root (`INSTALL_ORCH_ROOT`): the binary, the
//! kubectl/crictl/ctr symlinks (an existing kubectl left alone), the systemd unit a k3s user
//! expects (Type=notify, KillMode=process, Delegate=yes, limits), the agent's token kept in a
//! 0600 env file rather than the unit, the OpenRC variant, the generated scripts' syntax, bad
//! settings refused with one line, and the uninstall script removing every file it wrote.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn installer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh")
}

/// Runs `script` with `env`; (exit code, stdout + stderr).
fn run(script: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new("sh");
    command.arg(script);
    for key in ["ORCH_URL", "ORCH_TOKEN", "INSTALL_ORCH_EXEC", "INSTALL_ORCH_BIN"] {
        command.env_remove(key);
    }
    let out = command.envs(env.iter().copied()).output().expect("running sh");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Every file and symlink below `root`, relative to it.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn syntax_ok(script: &Path) {
    let out = Command::new("sh").arg("-n").arg(script).output().unwrap();
    assert!(out.status.success(), "{} has a syntax error: {}", script.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_server_installs_as_a_systemd_service_and_uninstalls_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    // A kubectl the user already has stays.
    std::fs::create_dir_all(root.path().join("usr/local/bin")).unwrap();
    std::fs::write(root.path().join("usr/local/bin/kubectl"), "#!/bin/sh\n").unwrap();
    let (code, log) = run(&installer(), &[("INSTALL_ORCH_ROOT", r), ("INSTALL_ORCH_BIN", env!("CARGO_BIN_EXE_orch"))]);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        files(root.path()),
        [
            "etc/systemd/system/orch.service",
            "etc/systemd/system/orch.service.env",
            "usr/local/bin/crictl",
            "usr/local/bin/ctr",
            "usr/local/bin/kubectl",
            "usr/local/bin/orch",
            "usr/local/bin/orch-killall.sh",
            "usr/local/bin/orch-uninstall.sh",
        ]
    );
    let bin = root.path().join("usr/local/bin");
    assert_eq!(std::fs::read(bin.join("orch")).unwrap(), std::fs::read(env!("CARGO_BIN_EXE_orch")).unwrap());
    assert_eq!(std::fs::read_link(bin.join("ctr")).unwrap(), Path::new("orch"));
    assert!(!bin.join("kubectl").is_symlink(), "the user's kubectl is left alone: {log}");
    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/orch.service")).unwrap();
    for line in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "Restart=always",
        "ExecStart=/usr/local/bin/orch server\n",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}:\n{unit}");
    }
    for script in ["orch-killall.sh", "orch-uninstall.sh"] {
        assert_eq!(std::fs::metadata(bin.join(script)).unwrap().permissions().mode() & 0o777, 0o755);
        syntax_ok(&bin.join(script));
    }

    let (code, log) = run(&bin.join("orch-uninstall.sh"), &[]);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(files(root.path()), ["usr/local/bin/kubectl"], "uninstall removes what install wrote, and only that");
}

#[test]
fn an_agent_keeps_its_token_out_of_the_unit_and_openrc_works_too() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let env = [
        ("INSTALL_ORCH_ROOT", r),
        ("INSTALL_ORCH_BIN", env!("CARGO_BIN_EXE_orch")),
        ("ORCH_URL", "https://192.0.2.1:6443"),
        ("ORCH_TOKEN", "K10secret::node:abc"),
    ];
    let (code, log) = run(&installer(), &env);
    assert_eq!(code, Some(0), "{log}");
    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/orch-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/orch agent --join ${ORCH_URL} --token ${ORCH_TOKEN}\n"), "{unit}");
    assert!(!unit.contains("K10secret"), "the token stays out of the unit file");
    let env_file = root.path().join("etc/systemd/system/orch-agent.service.env");
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), "ORCH_URL=https://192.0.2.1:6443\nORCH_TOKEN=K10secret::node:abc\n");

    let openrc = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env[0] = ("INSTALL_ORCH_ROOT", openrc.path().to_str().unwrap());
    env.push(("INSTALL_ORCH_INIT", "openrc"));
    let (code, log) = run(&installer(), &env);
    assert_eq!(code, Some(0), "{log}");
    let service = std::fs::read_to_string(openrc.path().join("etc/init.d/orch-agent")).unwrap();
    assert!(
        service.starts_with("#!/sbin/openrc-run") && service.contains("command_args=\"agent --join ${ORCH_URL} --token ${ORCH_TOKEN}\""),
        "{service}"
    );
    let (code, log) = run(&openrc.path().join("usr/local/bin/orch-uninstall.sh"), &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(files(openrc.path()).is_empty(), "{:?}", files(openrc.path()));
}

#[test]
fn bad_settings_are_refused_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let orch = env!("CARGO_BIN_EXE_orch");
    for (env, says) in [
        (vec![("INSTALL_ORCH_BIN", "/nonexistent/orch")], "is not an executable file"),
        (vec![("INSTALL_ORCH_BIN", orch), ("INSTALL_ORCH_EXEC", "serve")], "must start with server or agent"),
        (vec![("INSTALL_ORCH_BIN", orch), ("ORCH_URL", "https://x:6443")], "ORCH_TOKEN is not"),
        (vec![("INSTALL_ORCH_BIN", orch), ("INSTALL_ORCH_INIT", "upstart")], "must be systemd or openrc"),
    ] {
        let mut env = env;
        env.push(("INSTALL_ORCH_ROOT", r));
        let (code, log) = run(&installer(), &env);
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains(says) && log.trim().lines().count() == 1, "{log}");
    }
    assert!(files(root.path()).is_empty(), "nothing is written on refusal");
}
