//! `orch check-config`: every check of [`crate::node::preflight`] as a table, with the fix
//! for each problem (k3s's `check-config`). Exits 1 when a node on containerd could not run.

use std::path::Path;

use crate::node::preflight::{Finding, Machine, Severity};

/// One finding as a line of the table.
fn line(f: &Finding) -> String {
    match &f.problem {
        None => format!("  ok     {:<34} {}", f.check, f.detail),
        Some((severity, fix)) => {
            let mark = if *severity == Severity::Fatal { "FAIL" } else { "warn" };
            format!("  {mark:<6} {:<34} {}\n         fix: {fix}", f.check, f.detail)
        }
    }
}

/// Prints the report for this machine; `Ok(false)` when something fatal failed.
pub fn run(data_dir: &Path) -> bool {
    let findings = Machine::local(data_dir).check();
    println!("orch check-config (kernel {}):", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim());
    for f in &findings {
        println!("{}", line(f));
    }
    let fatal = findings.iter().filter(|f| f.is_fatal()).count();
    let warnings = findings.iter().filter(|f| matches!(f.problem, Some((Severity::Warning, _)))).count();
    if fatal == 0 {
        println!("this machine can run an orch node ({warnings} warning(s))");
    } else {
        println!("this machine cannot run an orch node: {fatal} problem(s) above must be fixed first");
    }
    fatal == 0
}
