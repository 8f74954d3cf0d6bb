//! A mixed fleet to look at: the Hetzner, Scaleway and OVHcloud fakes from the test suite
//! on loopback ports, one local `sshd` playing every server, a temporary Legion home
//! configured for the three clouds, a cluster spread over them, applied, and then the real
//! dashboard on it. Quitting the dashboard stops the fakes and removes the home.
//!
//! ```text
//! cargo build && cargo run --example mixed_fleet
//! ```
//!
//! Needs OpenSSH's server (`apt-get install openssh-server`); the servers' shells run as
//! you, in a temporary directory. Nothing reaches a real cloud.

#![allow(clippy::unwrap_used)]

use legion_testkit::rig as cloud_rig;
use legion_testkit::sshd;
use legion_testkit::three_clouds;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cloud_rig::{Rig, RigOpts};
use three_clouds::{Clouds, KINDS};

/// Node, provider, cluster.
const FLEET: [(&str, &str, &str); 5] = [
    ("web-1", "hetzner", "web"),
    ("web-2", "scaleway", "web"),
    ("web-3", "ovh", "web"),
    ("db-1", "hetzner", "db"),
    ("db-2", "scaleway", "db"),
];

/// The `legion` binary of the same build (`target/PROFILE/legion`, next to `examples/`).
fn legion_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("legion");
    bin.is_file().then_some(bin)
}

fn main() -> ExitCode {
    let Some(bin) = legion_binary() else {
        eprintln!(
            "mixed_fleet: no legion binary next to this example; build it first \
             (`cargo build`, or `cargo build --release` for `--release`)"
        );
        return ExitCode::FAILURE;
    };
    eprintln!("Starting the Hetzner, Scaleway and OVHcloud fakes and a loopback sshd…");
    let opts = RigOpts {
        bin,
        // The servers' shells are yours: no test user is made.
        user: Some(sshd::current_user()),
    };
    // Transitions as slow as a small real cloud's, so the dashboard shows them.
    let Some(mut rig) = Rig::start_with(opts, &KINDS, || Clouds::start(Duration::from_secs(2)))
    else {
        eprintln!(
            "mixed_fleet: OpenSSH's server is needed to play the servers \
             (apt-get install openssh-server)"
        );
        return ExitCode::FAILURE;
    };
    // Separate servers, separate filesystems: each node writes under its own directory.
    rig.sandbox_per_node();
    for (name, kind, cluster) in FLEET {
        rig.ok(&[
            "nodes",
            "add",
            name,
            "--provider",
            kind,
            "--cluster",
            cluster,
        ]);
    }
    eprintln!("Applying the plan: 5 nodes on three clouds (about 20 s)…");
    let applied = rig.cmd().args(["apply", "--wait"]).status();
    if !applied.is_ok_and(|s| s.success()) {
        eprintln!("mixed_fleet: the apply did not settle; the dashboard shows why");
    }
    eprintln!(
        "Opening the dashboard. Try: ctrl-r (read every cloud now), o/u (stop/start), \
         s (a shell), T (the node's logs), 3 (firewalls: OVHcloud's are operator tasks), \
         q (quit and clean up)."
    );
    std::thread::sleep(Duration::from_secs(2));
    let status = rig.cmd().status();
    drop(rig);
    eprintln!("The fakes and sshd are stopped; the temporary home is removed.");
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
