//! What the benches share: timing a command as its own process under GNU time.

use std::process::Command;

/// Runs `command` under GNU time; returns (seconds, peak RSS in KiB).
pub(crate) fn timed(command: &[&str]) -> (f64, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .args(command)
        .output()
        .expect("run /usr/bin/time (apt-get install time)");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    let mut fields = last.split_whitespace();
    let secs = fields
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let rss = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (secs, rss)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
