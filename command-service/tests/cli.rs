//! The binary refuses bad configuration at start, naming the setting, and never echoes secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn strata(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running strata");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_database_url_is_named() {
    let (code, err) = strata(&["serve"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("STRATA_DATABASE_URL"), "{err}");
}

#[test]
fn an_invalid_value_is_named() {
    let (code, err) = strata(&["serve"], &[("STRATA_PORT", "three thousand")]);
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_PORT"), "{err}");
    let (code, err) = strata(&["serve"], &[("STRATA_LOG_FORMAT", "xml")]);
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_LOG_FORMAT"), "{err}");
    let (code, err) = strata(
        &["serve"],
        &[("STRATA_DATABASE_PLAN_CACHE_MODE", "sometimes")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("STRATA_DATABASE_PLAN_CACHE_MODE") && err.contains("force_generic_plan"),
        "{err}"
    );
}

#[test]
fn secrets_are_not_echoed_in_errors() {
    let (code, err) = strata(
        &["serve"],
        &[("STRATA_DATABASE_URL", "mysql://admin:hunter2@db/x")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_DATABASE_URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_config_file_is_read_and_env_overrides_it() {
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strata.toml");
    std::fs::write(
        &file,
        "port = 4100\nlog_format = \"json\"\nno_such_key = 1\n",
    )
    .unwrap();
    let (code, err) = strata(&["--config", file.to_str().unwrap(), "serve"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no_such_key"),
        "unknown keys in the file are refused: {err}"
    );
    std::fs::write(&file, "log_format = \"yaml\"\n").unwrap();
    let (_, err) = strata(&["serve"], &[("STRATA_CONFIG", file.to_str().unwrap())]);
    assert!(err.contains("log_format"), "{err}");
    // The file's value alone is refused; the variable overrides it, so start gets as far as
    // the next missing setting.
    std::fs::write(&file, "database_max_connections = 0\n").unwrap();
    let (code, err) = strata(&["--config", file.to_str().unwrap(), "serve"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_DATABASE_MAX_CONNECTIONS"), "{err}");
    let (code, err) = strata(
        &["--config", file.to_str().unwrap(), "serve"],
        &[("STRATA_DATABASE_MAX_CONNECTIONS", "4")],
    );
    assert_ne!(code, 0);
    assert!(!err.contains("DATABASE_MAX_CONNECTIONS"), "{err}");
    assert!(err.contains("STRATA_DATABASE_URL"), "{err}");
}

/// Logs go to standard error: standard output carries only a subcommand's result, so
/// `strata audit verify | jq` works even when something is logged.
#[test]
fn logs_never_reach_standard_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["audit", "verify"])
        .env_clear()
        .env("STRATA_NO_SUCH_SETTING", "1")
        // Nothing listens on port 1: the command fails after warning about the variable.
        .env("STRATA_DATABASE_URL", "postgres://u@127.0.0.1:1/db")
        .env("STRATA_DATABASE_ACQUIRE_TIMEOUT_MS", "200")
        .output()
        .expect("running strata");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("STRATA_NO_SUCH_SETTING"), "{stderr}");
    assert!(stdout.trim().is_empty(), "stdout: {stdout}");
}
