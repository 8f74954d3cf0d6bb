//! Durable executions: the phase machine of add, reinstall and reconfigure.
//!
//! Pure functions over [`Execution`]. The node actor persists the record before and after
//! each phase; on engine start an execution found running is marked interrupted, so the
//! operator resumes it from a known phase and nothing assumes success.

use super::state::model::{ExecStatus, Execution, ExecutionKind, Phase, PhaseRecord, PhaseStatus};
use crate::core::time::now_ms;

pub fn phases_for(kind: ExecutionKind) -> &'static [Phase] {
    match kind {
        ExecutionKind::Add => &[
            Phase::Provision,
            Phase::WaitReachable,
            Phase::Bootstrap,
            Phase::Configure,
            Phase::Install,
            Phase::Readiness,
        ],
        ExecutionKind::Reinstall => &[
            Phase::ImageReset,
            Phase::WaitReachable,
            Phase::Bootstrap,
            Phase::Configure,
            Phase::Install,
            Phase::Readiness,
        ],
        ExecutionKind::Reconfigure => &[Phase::Configure, Phase::Readiness],
        ExecutionKind::Resize => &[
            Phase::PowerOff,
            Phase::Resize,
            Phase::PowerOn,
            Phase::WaitReachable,
            Phase::Readiness,
        ],
        ExecutionKind::Replace => &[
            Phase::Provision,
            Phase::WaitReachable,
            Phase::Bootstrap,
            Phase::Configure,
            Phase::Install,
            Phase::Readiness,
            Phase::DestroyOld,
        ],
    }
}

impl Execution {
    pub fn new(id: u64, kind: ExecutionKind) -> Execution {
        Execution {
            id,
            kind,
            status: ExecStatus::Running,
            phases: phases_for(kind)
                .iter()
                .map(|&phase| PhaseRecord {
                    phase,
                    status: PhaseStatus::Pending,
                    started_ms: None,
                    finished_ms: None,
                    error: None,
                })
                .collect(),
            started_ms: now_ms(),
            finished_ms: None,
            retiring: None,
        }
    }

    /// The phase to run next: the first one not done.
    pub fn next_phase(&self) -> Option<Phase> {
        self.phases
            .iter()
            .find(|p| p.status != PhaseStatus::Done)
            .map(|p| p.phase)
    }

    /// The phase running, failed or interrupted, for the snapshot's substage.
    pub fn current_phase(&self) -> Option<Phase> {
        self.phases
            .iter()
            .find(|p| {
                matches!(
                    p.status,
                    PhaseStatus::Running | PhaseStatus::Failed | PhaseStatus::Interrupted
                )
            })
            .map(|p| p.phase)
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.status, ExecStatus::Failed | ExecStatus::Interrupted)
    }

    pub fn failure(&self) -> Option<&str> {
        self.phases.iter().rev().find_map(|p| p.error.as_deref())
    }

    fn record_mut(&mut self, phase: Phase) -> Option<&mut PhaseRecord> {
        self.phases.iter_mut().find(|p| p.phase == phase)
    }

    pub fn start_phase(&mut self, phase: Phase) {
        self.status = ExecStatus::Running;
        self.finished_ms = None;
        if let Some(p) = self.record_mut(phase) {
            p.status = PhaseStatus::Running;
            p.started_ms = Some(now_ms());
            p.finished_ms = None;
            p.error = None;
        }
    }

    pub fn finish_phase(&mut self, phase: Phase) {
        if let Some(p) = self.record_mut(phase) {
            p.status = PhaseStatus::Done;
            p.finished_ms = Some(now_ms());
        }
        if self.next_phase().is_none() {
            self.status = ExecStatus::Succeeded;
            self.finished_ms = Some(now_ms());
        }
    }

    pub fn fail_phase(&mut self, phase: Phase, error: String) {
        if let Some(p) = self.record_mut(phase) {
            p.status = PhaseStatus::Failed;
            p.finished_ms = Some(now_ms());
            p.error = Some(error);
        }
        self.status = ExecStatus::Failed;
        self.finished_ms = Some(now_ms());
    }

    /// Resume: a failed or interrupted phase goes back to pending; done phases stay done.
    pub fn resume(&mut self) {
        for p in &mut self.phases {
            if matches!(p.status, PhaseStatus::Failed | PhaseStatus::Interrupted) {
                p.status = PhaseStatus::Pending;
            }
        }
        self.status = ExecStatus::Running;
        self.finished_ms = None;
    }

    /// At engine start: a running execution belongs to a process that is gone.
    /// Returns whether anything changed.
    pub fn interrupt_if_running(&mut self) -> bool {
        if self.status != ExecStatus::Running {
            return false;
        }
        self.status = ExecStatus::Interrupted;
        for p in &mut self.phases {
            if p.status == PhaseStatus::Running {
                p.status = PhaseStatus::Interrupted;
                p.error = Some("interrupted: Legion stopped during this phase".into());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_phases_in_order_and_succeeds() {
        let mut e = Execution::new(1, ExecutionKind::Add);
        let mut seen = Vec::new();
        while let Some(p) = e.next_phase() {
            e.start_phase(p);
            e.finish_phase(p);
            seen.push(p);
        }
        assert_eq!(seen, phases_for(ExecutionKind::Add));
        assert_eq!(e.status, ExecStatus::Succeeded);
        assert!(!e.is_retryable());
    }

    #[test]
    fn failure_resumes_from_the_failed_phase() {
        let mut e = Execution::new(1, ExecutionKind::Reinstall);
        e.start_phase(Phase::ImageReset);
        e.finish_phase(Phase::ImageReset);
        e.start_phase(Phase::WaitReachable);
        e.fail_phase(Phase::WaitReachable, "timeout".into());
        assert!(e.is_retryable());
        assert_eq!(e.current_phase(), Some(Phase::WaitReachable));
        assert_eq!(e.failure(), Some("timeout"));
        e.resume();
        assert_eq!(e.next_phase(), Some(Phase::WaitReachable));
        assert_eq!(e.status, ExecStatus::Running);
    }

    #[test]
    fn interrupt_marks_running_phase() {
        let mut e = Execution::new(1, ExecutionKind::Add);
        e.start_phase(Phase::Provision);
        assert!(e.interrupt_if_running());
        assert_eq!(e.status, ExecStatus::Interrupted);
        assert_eq!(e.current_phase(), Some(Phase::Provision));
        assert!(!e.interrupt_if_running());
        e.resume();
        assert_eq!(e.next_phase(), Some(Phase::Provision));
    }
}
