//! A cloud home for end-to-end tests: a provider's fake API, a real sshd on loopback
//! playing the servers (the fake hands out 127.0.0.1), and a temporary Legion home
//! initialized, configured for the provider from its default variables, and with its
//! managed key authorized on the sshd.
//!
//! The Hetzner rig is [`Rig::hetzner`]; other clouds pass their fake to [`Rig::start`].
//! One rig can carry several clouds ([`Rig::start_clouds`], with
//! [`crate::three_clouds::Clouds`]): the fakes together in `F`, one sshd playing every
//! server.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::hetzner::HetznerFake;
use crate::sshd::{self, Sshd, SshdOpts};

pub struct Rig<F> {
    pub fake: F,
    pub sshd: Sshd,
    pub dir: tempfile::TempDir,
    /// The node's filesystem root for Legion's files, writable by the login user.
    pub node_root: tempfile::TempDir,
    /// Who Legion logs in as on the "servers".
    pub user: String,
    pub vars: Vec<(&'static str, String)>,
    /// The `legion` binary the rig runs.
    pub bin: PathBuf,
}

/// Where the rig's servers are logged in to, and with which binary.
pub struct RigOpts {
    pub bin: PathBuf,
    /// The login user; `None`: the dedicated test user as root, else the current user.
    pub user: Option<String>,
}

impl Default for RigOpts {
    fn default() -> Self {
        RigOpts {
            bin: legion_binary(),
            user: None,
        }
    }
}

/// The `legion` binary of the same build: `target/PROFILE/legion`, beside the `deps/`
/// (tests, benches) or `examples/` folder the running executable is in; cargo builds it
/// for every integration test and bench (the path `CARGO_BIN_EXE_legion` names, which
/// only the test crate itself sees). Plain `legion` from `PATH` when there is none.
pub fn legion_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("legion")))
        .filter(|bin| bin.is_file())
        .unwrap_or_else(|| PathBuf::from("legion"))
}

impl<F> Rig<F> {
    /// `None` (after a SKIPPED line) when sshd is not installed. `make` starts the fake
    /// (handing out 127.0.0.1) and returns it with the provider's variables: its API URL
    /// and its default credential variables, so `provider configure KIND` needs no flags.
    pub fn start(
        kind: &str,
        make: impl FnOnce() -> (F, Vec<(&'static str, String)>),
    ) -> Option<Rig<F>> {
        Self::start_clouds(&[kind], make)
    }

    /// One home configured for several clouds: `make` starts every fake and returns them
    /// (in `F`) with all their variables.
    pub fn start_clouds(
        kinds: &[&str],
        make: impl FnOnce() -> (F, Vec<(&'static str, String)>),
    ) -> Option<Rig<F>> {
        Self::start_with(RigOpts::default(), kinds, make)
    }

    pub fn start_with(
        opts: RigOpts,
        kinds: &[&str],
        make: impl FnOnce() -> (F, Vec<(&'static str, String)>),
    ) -> Option<Rig<F>> {
        let sshd = Sshd::start(SshdOpts::default())?;
        let (fake, provider_vars) = make();
        let dir = tempfile::tempdir().unwrap();
        // As root, log in as the dedicated test user (plain /bin/sh, no dotfiles): root's
        // own shell startup on a developer machine can be slow or take locks.
        let user = match opts.user {
            Some(user) => user,
            None if sshd::is_root() => sshd::test_user().unwrap().name.to_string(),
            None => sshd::current_user(),
        };
        let node_root = tempfile::Builder::new()
            .prefix("legion-node-")
            .tempdir()
            .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(node_root.path(), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            if sshd::is_root() {
                let ok = Command::new("chown")
                    .arg(&user)
                    .arg(node_root.path())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown the node root");
            }
        }
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{} end to end\n", kinds.join("+"))).unwrap();
        let mut vars = provider_vars;
        vars.extend([
            ("LEGION_HOME", dir.path().join("home").display().to_string()),
            ("LEGION_PASSWORD_FILE", pw.display().to_string()),
            ("LEGION_SSH_PORT", sshd.port().to_string()),
            ("LEGION_SSH_USER", user.clone()),
            (
                "LEGION_SSH_SANDBOX_ROOT",
                node_root.path().display().to_string(),
            ),
        ]);
        let rig = Rig {
            fake,
            sshd,
            dir,
            node_root,
            user,
            vars,
            bin: opts.bin,
        };
        rig.ok(&["config", "init"]);
        // The managed key, made at init, is what the servers accept (cloud-init puts
        // the uploaded key in place on a real server; here the sshd is told directly).
        let public = rig.ok(&["ssh-key", "show"]);
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        rig.sshd.authorize_user(&rig.user, public.trim());
        // The credentials come from the descriptor's default variables.
        for kind in kinds {
            rig.ok(&["provider", "configure", kind]);
        }
        Some(rig)
    }

    /// `legion` with this rig's environment (no daemon, no simulated cloud).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK");
        c
    }

    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "legion {args:?}: {err}\n{out}");
        out
    }

    /// `VAR=value ...` for a shell command line (tmux).
    pub fn env_line(&self) -> String {
        self.vars.iter().map(|(k, v)| format!("{k}={v} ")).collect()
    }

    pub fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    pub fn sandbox(&self) -> std::path::PathBuf {
        self.node_root.path().to_path_buf()
    }

    /// Give every node its own sandbox (`NODE_ROOT/NAME`), as separate servers have
    /// their own filesystems: nodes deployed side by side no longer share files.
    pub fn sandbox_per_node(&mut self) {
        let root = format!("{}/{{node}}", self.node_root.path().display());
        for (k, v) in &mut self.vars {
            if *k == "LEGION_SSH_SANDBOX_ROOT" {
                *v = root.clone();
            }
        }
    }

    /// A node's sandbox after [`Self::sandbox_per_node`].
    pub fn sandbox_of(&self, node: &str) -> std::path::PathBuf {
        self.node_root.path().join(node)
    }
}

impl Rig<HetznerFake> {
    /// The Hetzner fake with short actions; the token comes from `HCLOUD_TOKEN`.
    pub fn hetzner() -> Option<Self> {
        Rig::start("hetzner", || {
            let fake = HetznerFake::start();
            fake.set_action_duration(Duration::from_millis(30));
            fake.set_server_ipv4("127.0.0.1");
            let vars = fake.legion_vars();
            (fake, vars)
        })
    }
}
