//! The process exit code for an error: the one place that decides it.
//!
//! Codes (documented in `--help` and docs/cli.md): 0 ok, 1 failure, 2 usage (clap exits
//! with it itself) or, for `legion plan --detailed-exitcode`, changes to make, 3 locked / wrong password / state in use / wrong daemon token, 4 the
//! daemon is unavailable. The choice reads the [`EngineError`] in the error's chain, never
//! the message text.

use color_eyre::eyre::Report;

use crate::engine::EngineError;

pub const FAILURE: u8 = 1;
/// `legion plan --detailed-exitcode` found changes (Terraform's convention).
pub const CHANGES: u8 = 2;
pub const LOCKED: u8 = 3;
pub const DAEMON_UNAVAILABLE: u8 = 4;

/// `legion plan --detailed-exitcode` found this many changes: exit [`CHANGES`] and print
/// no error (the plan itself was the output).
#[derive(Debug, thiserror::Error)]
#[error("the plan has {0} changes")]
pub struct PlanHasChanges(pub usize);

/// Whether the error is an outcome already reported on stdout, not a failure to print.
pub fn is_silent(err: &Report) -> bool {
    err.downcast_ref::<PlanHasChanges>().is_some()
}

/// The exit code for an error a command returned.
pub fn exit_code(err: &Report) -> u8 {
    if is_silent(err) {
        return CHANGES;
    }
    err.chain()
        .find_map(|c| c.downcast_ref::<EngineError>())
        .map_or(FAILURE, EngineError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use color_eyre::eyre::{WrapErr, eyre};

    #[test]
    fn codes_come_from_the_engine_error_in_the_chain() {
        let wrapped: Result<(), _> =
            Err(EngineError::Locked).wrap_err("the daemon's engine is locked");
        assert_eq!(exit_code(&wrapped.unwrap_err()), LOCKED);
        let gone: Report = EngineError::Unavailable("no daemon".into()).into();
        assert_eq!(exit_code(&gone), DAEMON_UNAVAILABLE);
        let remote: Report = EngineError::from_wire(
            crate::engine::ErrorKind::Unauthorized,
            "bad token".into(),
            Vec::new(),
        )
        .into();
        assert_eq!(exit_code(&remote), LOCKED);
        assert_eq!(
            exit_code(&EngineError::Refused("no".into()).into()),
            FAILURE
        );
        assert_eq!(exit_code(&eyre!("anything else")), FAILURE);
        let changes: Report = PlanHasChanges(3).into();
        assert!(is_silent(&changes));
        assert_eq!(exit_code(&changes), CHANGES);
    }
}
