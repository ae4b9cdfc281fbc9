//! How the command line fails: one line on stderr starting with `error: `, exit code 2 for
//! input the operator must fix (a bad flag value, missing configuration) and 1 for anything
//! that went wrong while running.

use curfew_core::ports::PortError;

/// Input the operator must fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// An [`anyhow::Error`] that exits with code 2.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.into()))
}

/// The process exit code for `err`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<BadInput>()) {
        2
    } else {
        1
    }
}

/// The error and its causes on one line. The chain stops at a [`PortError`]: its message
/// already carries the AWS error code and message, and the SDK's own sources below it only
/// repeat them less readably.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        if cause.is::<PortError>() {
            break;
        }
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A clap error on one line: the message and its tip, without the usage block.
pub fn clap_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn bad_input_exits_with_two_even_under_context() {
        let err = Err::<(), _>(bad_input("--cron: invalid"))
            .context("adding a schedule")
            .unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
    }

    #[test]
    fn a_multi_line_cause_prints_on_one_line() {
        let err = anyhow::anyhow!("first\nsecond").context("doing it");
        assert_eq!(one_line(&err), "doing it: first second");
    }
}
