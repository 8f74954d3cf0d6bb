//! Legion's test kit: the cloud fakes (Hetzner, OVHcloud, Scaleway) over one shared HTTP
//! server ([`http`]), the real-process harnesses (`sshd` on loopback, a private `tmux`),
//! and the rigs that put a Legion home in front of a fake and an sshd.
//!
//! It does not depend on `legion`: the fakes speak the clouds' HTTP and know nothing of
//! Legion's types, so the kit is compiled once per build and not again when `src/`
//! changes. Rigs run the `legion` binary found next to the test executable. What needs
//! Legion's types (the engine harness) stays in `tests/it/support.rs`.

pub mod gate;
pub mod hetzner;
pub mod http;
pub mod ovh;
pub mod rig;
pub mod scaleway;
pub mod sshd;
pub mod three_clouds;
pub mod tmux;
