//! Connecting (TCP with a timeout, bounded handshake, host key check, login) and the
//! operations of an open session.
//!
//! libssh2 is driven in blocking mode with a timeout on every call; while a command runs,
//! its stdin, stdout and stderr are serviced without blocking and the thread then waits
//! on the socket for at most [`WAIT_SLICE`], so no stream can stall another and the
//! command's overall timeout is honoured.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::{
    AuthMethod, Doing, LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_EAGAIN,
    LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV,
    LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_TIMEOUT, SshError, is_code,
};
use super::keys::{HostKeyFingerprint, KeyError, parse_public_line};
use super::remote::{
    ExecOutput, KeyInstall, OUTPUT_TAIL_BYTES, SUDO_PROBE, SudoStatus, Tail, command_label, in_sh,
    install_key_script, parse_sudo_probe, signal_status, upload_script,
};
use super::{Auth, ConnectOptions, Target};
use crate::core::secret::Secret;

/// The longest a wait on the socket lasts before every stream of a running command is
/// serviced again.
const WAIT_SLICE: Duration = Duration::from_millis(50);
/// Bound for saying goodbye when a session is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Password expired (LIBSSH2_ERROR_PASSWORD_EXPIRED).
const LIBSSH2_ERROR_PASSWORD_EXPIRED: i32 = -15;
/// How much of a failed command's output goes into the error message.
const ERROR_TAIL_BYTES: usize = 2048;
/// Reads per stream per turn, so a flood on one stream cannot starve the deadline check.
const READS_PER_TURN: usize = 64;

/// Connect with [`ConnectOptions::default`]. See [`connect_with`].
pub fn connect(
    target: &Target,
    auth: Auth<'_>,
    pinned: Option<&HostKeyFingerprint>,
) -> Result<(SshSession, HostKeyFingerprint), SshError> {
    connect_with(target, auth, pinned, &ConnectOptions::default())
}

/// Open an authenticated session and return it with the host key fingerprint the server
/// presented. With `pinned`, a different host key is refused before authenticating
/// ([`SshError::HostKeyChanged`]); with `None`, the caller is trusting this key (first use
/// or an explicit re-trust) and should record the returned fingerprint.
pub fn connect_with(
    target: &Target,
    auth: Auth<'_>,
    pinned: Option<&HostKeyFingerprint>,
    opts: &ConnectOptions,
) -> Result<(SshSession, HostKeyFingerprint), SshError> {
    let label = target.to_string();
    let tcp = tcp_connect(target, &label, opts.connect_timeout)?;
    // Best effort: only latency depends on it.
    let _ = tcp.set_nodelay(true);

    let handshake = Doing {
        target: &label,
        during: "the SSH handshake",
        timeout: opts.handshake_timeout,
    };
    let mut session = ssh2::Session::new().map_err(|e| handshake.ssh2(&e))?;
    // A second handle on the socket, for the streaming threads to wait on it (libssh2
    // shows its own only as a raw descriptor). Without one they poll on a timer.
    let socket = tcp.try_clone().ok();
    session.set_tcp_stream(tcp);
    session.set_blocking(true);
    session.set_timeout(millis(opts.handshake_timeout));
    session.handshake().map_err(|e| handshake.ssh2(&e))?;

    let Some((blob, _kind)) = session.host_key() else {
        return Err(SshError::Protocol {
            target: label,
            during: "the SSH handshake".into(),
            detail: "the server presented no host key".into(),
        });
    };
    let seen = HostKeyFingerprint::from_key_blob(blob);
    let ssh = SshSession {
        session,
        socket,
        target: target.clone(),
        label,
        host_key: seen.clone(),
        io_timeout: opts.io_timeout,
    };
    if let Some(pinned) = pinned
        && *pinned != seen
    {
        // Nothing but the key exchange has happened; dropping `ssh` disconnects.
        return Err(SshError::HostKeyChanged {
            host: target.host_label(),
            old: pinned.clone(),
            new: seen,
        });
    }
    ssh.authenticate(auth, opts.handshake_timeout)?;
    ssh.session.set_timeout(millis(opts.io_timeout));
    tracing::debug!(dest = %ssh.label, host_key = %seen, "ssh session open");
    Ok((ssh, seen))
}

fn tcp_connect(target: &Target, label: &str, timeout: Duration) -> Result<TcpStream, SshError> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| SshError::Unreachable {
            target: label.to_string(),
            reason: format!("cannot resolve {}: {e}", target.host),
        })?
        .collect();
    let mut last = SshError::Unreachable {
        target: label.to_string(),
        reason: format!("{} has no address", target.host),
    };
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout.max(Duration::from_millis(1))) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = connect_error(&e, label, addr, timeout),
        }
    }
    Err(last)
}

fn connect_error(err: &io::Error, label: &str, addr: SocketAddr, timeout: Duration) -> SshError {
    let target = label.to_string();
    match err.kind() {
        io::ErrorKind::ConnectionRefused => SshError::Refused { target },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => SshError::Timeout {
            target,
            during: format!("connecting to {addr}"),
            after: timeout,
        },
        _ => SshError::Unreachable {
            target,
            reason: format!("connecting to {addr}: {err}"),
        },
    }
}

/// An authenticated SSH session. Operations take `&mut self`: one at a time.
pub struct SshSession {
    session: ssh2::Session,
    socket: Option<TcpStream>,
    target: Target,
    label: String,
    host_key: HostKeyFingerprint,
    io_timeout: Duration,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshSession")
            .field("target", &self.label)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

impl SshSession {
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The fingerprint of the host key this session was opened against.
    pub fn host_key(&self) -> &HostKeyFingerprint {
        &self.host_key
    }

    /// The server's host key as a `known_hosts` line (`host key-type base64`), for
    /// handing a verified key to the system `ssh`. Empty when libssh2 has none.
    pub fn known_hosts_line(&self) -> String {
        use base64ct::Encoding;
        let Some((blob, _)) = self.session.host_key() else {
            return String::new();
        };
        // The blob starts with its own type name as an SSH string.
        let kind = blob
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n))
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("ssh-ed25519");
        let host = match self.target.port {
            22 => self.target.host.clone(),
            port => format!("[{}]:{port}", self.target.host),
        };
        format!("{host} {kind} {}", base64ct::Base64::encode_string(blob))
    }

    /// The underlying libssh2 session, for channels this module does not offer (the
    /// terminal pane's PTY). Each operation here resets blocking mode and timeout first.
    pub fn ssh2_session(&self) -> &ssh2::Session {
        &self.session
    }

    /// The session's socket, to wait on while libssh2 is in non-blocking mode (see
    /// [`super::wait`]); `None` when it could not be duplicated.
    pub fn socket(&self) -> Option<&TcpStream> {
        self.socket.as_ref()
    }

    /// Run `cmd` (through the login shell, as `ssh host cmd` does) with no input. Fails
    /// only when the command could not be run to completion (timeout, lost connection);
    /// a non-zero exit is reported in [`ExecOutput::status`]. Commands are not logged,
    /// but pass secrets through [`SshSession::exec_with_input`] anyway: the remote
    /// process list shows arguments.
    ///
    /// On timeout the channel is closed; the remote process may keep running until it
    /// next writes output.
    pub fn exec(&mut self, cmd: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        self.run(cmd, &command_label(cmd), b"", timeout)
    }

    /// Like [`SshSession::exec`], writing `input` to the command's stdin, then closing it.
    pub fn exec_with_input(
        &mut self,
        cmd: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        self.run(cmd, &command_label(cmd), input, timeout)
    }

    /// Like [`SshSession::exec`], turning a non-zero exit into
    /// [`SshError::CommandFailed`] with the output's tail.
    pub fn exec_checked(&mut self, cmd: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let label = command_label(cmd);
        let out = self.run(cmd, &label, b"", timeout)?;
        self.check(&label, out)
    }

    /// Write `bytes` to the remote `path` with permission bits `mode`, atomically: the
    /// content goes to a temporary file in the same directory, gets its mode, and is
    /// renamed over `path`. A relative path is relative to the login directory. Uses the
    /// exec channel and `sh` (no SFTP subsystem needed).
    pub fn upload(&mut self, path: &str, bytes: &[u8], mode: u32) -> Result<(), SshError> {
        if path.is_empty() || path.ends_with('/') || path.contains(['\0', '\n']) {
            return Err(SshError::Invalid(format!(
                "cannot upload to {path:?}: give a file path"
            )));
        }
        let label = format!("upload to {path}");
        let script = upload_script(path, mode, &nonce());
        let out = self.run(&script, &label, bytes, self.io_timeout)?;
        self.check(&label, out).map(|_| ())
    }

    /// Add a public key line to the login user's `~/.ssh/authorized_keys` unless that
    /// key is already there (whatever its comment or options); creates `~/.ssh` (0700)
    /// and the file (0600) when missing.
    pub fn install_public_key(&mut self, public_openssh: &str) -> Result<KeyInstall, SshError> {
        let key = parse_public_line(public_openssh)?;
        let line = key.to_openssh().map_err(|e| KeyError::Encode {
            which: "public",
            detail: e.to_string(),
        })?;
        let blob = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let label = "adding the key to ~/.ssh/authorized_keys";
        let out = self.run(
            &install_key_script(&line, &blob),
            label,
            b"",
            self.io_timeout,
        )?;
        let out = self.check(label, out)?;
        match out.stdout.lines().last().map(str::trim) {
            Some("legion:added") => Ok(KeyInstall::Added),
            Some("legion:present") => Ok(KeyInstall::AlreadyPresent),
            _ => Err(self.unexpected(label, &out)),
        }
    }

    /// Can the login user become root without a password? (`id -u`, then `sudo -n true`.)
    pub fn sudo_check(&mut self) -> Result<SudoStatus, SshError> {
        let label = "checking sudo";
        let out = self.run(&in_sh(SUDO_PROBE), label, b"", self.io_timeout)?;
        let out = self.check(label, out)?;
        parse_sudo_probe(&out.stdout).ok_or_else(|| self.unexpected(label, &out))
    }

    fn unexpected(&self, label: &str, out: &ExecOutput) -> SshError {
        SshError::Protocol {
            target: self.label.clone(),
            during: label.to_string(),
            detail: format!(
                "unexpected output (a login script printing to stdout?): {:?}",
                out.stdout.chars().take(200).collect::<String>()
            ),
        }
    }

    fn check(&self, label: &str, out: ExecOutput) -> Result<ExecOutput, SshError> {
        if out.success() {
            return Ok(out);
        }
        Err(SshError::CommandFailed {
            target: self.label.clone(),
            command: label.to_string(),
            status: out.status,
            output_tail: out.tail(ERROR_TAIL_BYTES),
        })
    }

    fn authenticate(&self, auth: Auth<'_>, timeout: Duration) -> Result<(), SshError> {
        let user = self.target.user.as_str();
        let doing = Doing {
            target: &self.label,
            during: "authenticating",
            timeout,
        };
        let failed = |method, detail: String| SshError::AuthFailed {
            target: self.label.clone(),
            method,
            detail,
        };
        self.session.set_timeout(millis(timeout));
        let offered = match self.session.auth_methods(user) {
            Ok(methods) => methods.to_string(),
            // The server let us in without credentials.
            Err(_) if self.session.authenticated() => return Ok(()),
            Err(e) => return Err(doing.ssh2(&e)),
        };
        let offers = |m: &str| offered.split(',').any(|o| o == m);

        let method = match auth {
            Auth::Key(key) => {
                let method = AuthMethod::PublicKey;
                if !offers("publickey") {
                    return Err(failed(
                        method,
                        format!(
                            "the server does not accept keys for {user} (it offers: {offered})"
                        ),
                    ));
                }
                match self.session.userauth_pubkey_memory(
                    user,
                    None,
                    key.private_openssh().expose(),
                    None,
                ) {
                    Ok(()) => {}
                    Err(e)
                        if is_code(&e, LIBSSH2_ERROR_AUTHENTICATION_FAILED)
                            || is_code(&e, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) =>
                    {
                        return Err(failed(
                            method,
                            format!(
                                "the server did not accept Legion's key {} for {user}; \
                                 install it first (password bootstrap, or add the public key \
                                 to that user's ~/.ssh/authorized_keys)",
                                key.fingerprint()
                            ),
                        ));
                    }
                    Err(e) => return Err(doing.ssh2(&e)),
                }
                method
            }
            Auth::Password(password) => {
                let (method, result) = if offers("password") {
                    (
                        AuthMethod::Password,
                        self.session.userauth_password(user, password.expose()),
                    )
                } else if offers("keyboard-interactive") {
                    let mut prompt = PasswordPrompt {
                        password,
                        rounds: 0,
                    };
                    (
                        AuthMethod::KeyboardInteractive,
                        self.session
                            .userauth_keyboard_interactive(user, &mut prompt),
                    )
                } else {
                    return Err(failed(
                        AuthMethod::Password,
                        format!(
                            "the server does not accept passwords for {user} (it offers: \
                             {offered}); add Legion's public key to the host by hand instead"
                        ),
                    ));
                };
                match result {
                    Ok(()) => {}
                    Err(e) if is_code(&e, LIBSSH2_ERROR_AUTHENTICATION_FAILED) => {
                        return Err(failed(
                            method,
                            format!("the server rejected the password for {user}"),
                        ));
                    }
                    Err(e) if is_code(&e, LIBSSH2_ERROR_PASSWORD_EXPIRED) => {
                        return Err(failed(
                            method,
                            format!(
                                "the password of {user} has expired; log in once by hand to \
                                 change it"
                            ),
                        ));
                    }
                    Err(e) => return Err(doing.ssh2(&e)),
                }
                method
            }
        };
        if self.session.authenticated() {
            Ok(())
        } else {
            Err(failed(
                method,
                "the server asks for further authentication steps (multi-factor login is not \
                 supported)"
                    .into(),
            ))
        }
    }

    fn run(
        &mut self,
        cmd: &str,
        label: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let during = format!("running {label}");
        let doing = Doing {
            target: &self.label,
            during: &during,
            timeout,
        };
        let sess = &self.session;
        sess.set_blocking(true);
        sess.set_timeout(millis(timeout));
        let result = sess
            .channel_session()
            .map_err(|e| doing.ssh2(&e))
            .and_then(|mut channel| {
                channel.exec(cmd).map_err(|e| doing.ssh2(&e))?;
                match pump(sess, &mut channel, input, deadline, &doing)
                    .and_then(|streams| finish(sess, &mut channel, streams, deadline, &doing))
                {
                    Ok(out) => Ok(out),
                    Err(e) => {
                        abandon(sess, channel);
                        Err(e)
                    }
                }
            });
        sess.set_blocking(true);
        sess.set_timeout(millis(self.io_timeout));
        if let Ok(out) = &result {
            tracing::debug!(
                dest = %self.label,
                status = out.status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ssh exec finished"
            );
        }
        result
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        self.session.set_blocking(true);
        self.session.set_timeout(millis(CLOSE_TIMEOUT));
        let _ = self.session.disconnect(
            Some(ssh2::DisconnectCode::ByApplication),
            "legion: session closed",
            None,
        );
    }
}

/// Feed stdin and collect stdout/stderr until the remote side ends its output.
fn pump(
    sess: &ssh2::Session,
    channel: &mut ssh2::Channel,
    input: &[u8],
    deadline: Instant,
    doing: &Doing<'_>,
) -> Result<(Tail, Tail), SshError> {
    let mut out = Tail::new(OUTPUT_TAIL_BYTES);
    let mut err = Tail::new(OUTPUT_TAIL_BYTES);
    let mut buf = vec![0u8; 32 * 1024];
    let mut written = 0usize;
    let mut stdin_open = true;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(doing.timeout());
        }
        sess.set_blocking(false);
        let mut progressed = false;
        if stdin_open && written < input.len() {
            match channel.write(&input[written..]) {
                Ok(n) => {
                    written += n;
                    progressed |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_fatal(&e) => return Err(doing.io(&e)),
                // The command closed its stdin early; its status tells the rest.
                Err(_) => stdin_open = false,
            }
        }
        if stdin_open && written >= input.len() {
            match channel.send_eof() {
                Ok(()) => stdin_open = false,
                Err(e) if is_code(&e, LIBSSH2_ERROR_EAGAIN) => {}
                Err(e) if is_fatal_ssh2(&e) => return Err(doing.ssh2(&e)),
                Err(_) => stdin_open = false,
            }
        }
        progressed |= drain(&mut channel.stream(0), &mut out, &mut buf, doing)?;
        progressed |= drain(&mut channel.stderr(), &mut err, &mut buf, doing)?;
        if channel.eof() {
            return Ok((out, err));
        }
        if progressed {
            continue;
        }
        // Nothing moved: wait on the socket for one slice, on whichever stream we owe.
        sess.set_blocking(true);
        sess.set_timeout(millis(WAIT_SLICE.min(deadline - now)));
        let waited = if stdin_open && written < input.len() {
            channel.write(&input[written..]).map(|n| written += n)
        } else {
            channel.read(&mut buf).map(|n| out.push(&buf[..n]))
        };
        match waited {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) if is_fatal(&e) => return Err(doing.io(&e)),
            Err(_) if stdin_open && written < input.len() => stdin_open = false,
            Err(e) => return Err(doing.io(&e)),
        }
    }
}

/// Read what one stream has without blocking; `true` if anything came.
fn drain(
    stream: &mut ssh2::Stream,
    tail: &mut Tail,
    buf: &mut [u8],
    doing: &Doing<'_>,
) -> Result<bool, SshError> {
    let mut got = false;
    for _ in 0..READS_PER_TURN {
        match stream.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.push(&buf[..n]);
                got = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(doing.io(&e)),
        }
    }
    Ok(got)
}

/// Wait for the channel to close and collect the exit status.
fn finish(
    sess: &ssh2::Session,
    channel: &mut ssh2::Channel,
    (out, err): (Tail, Tail),
    deadline: Instant,
    doing: &Doing<'_>,
) -> Result<ExecOutput, SshError> {
    sess.set_blocking(true);
    sess.set_timeout(millis(deadline.saturating_duration_since(Instant::now())));
    channel.wait_close().map_err(|e| doing.ssh2(&e))?;
    let signal = channel
        .exit_signal()
        .map_err(|e| doing.ssh2(&e))?
        .exit_signal;
    let status = match &signal {
        Some(name) => signal_status(name),
        None => channel.exit_status().map_err(|e| doing.ssh2(&e))?,
    };
    let (stdout, out_dropped) = out.finish();
    let (stderr, err_dropped) = err.finish();
    Ok(ExecOutput {
        status,
        signal,
        stdout,
        stderr,
        truncated: out_dropped || err_dropped,
    })
}

/// Give up on a channel after a timeout or failure without waiting: ask the server to
/// close it and free it. sshd closes a session channel only once its command has exited,
/// so waiting here would make a timeout last as long as the command.
fn abandon(sess: &ssh2::Session, mut channel: ssh2::Channel) {
    sess.set_blocking(false);
    let _ = channel.close();
    drop(channel);
    sess.set_blocking(true);
}

/// The socket is gone or timed out, as opposed to a channel-level refusal.
fn is_fatal(err: &io::Error) -> bool {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<ssh2::Error>())
        .is_none_or(is_fatal_ssh2)
}

fn is_fatal_ssh2(err: &ssh2::Error) -> bool {
    [
        LIBSSH2_ERROR_SOCKET_DISCONNECT,
        LIBSSH2_ERROR_SOCKET_RECV,
        LIBSSH2_ERROR_SOCKET_SEND,
        LIBSSH2_ERROR_TIMEOUT,
    ]
    .iter()
    .any(|code| is_code(err, *code))
}

/// libssh2 takes milliseconds, and 0 means "no timeout": never pass 0.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// A suffix that keeps concurrent uploads to one path from sharing a temporary file.
fn nonce() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        return format!("{}-{t}", std::process::id());
    }
    hex::encode(bytes)
}

/// Answers keyboard-interactive password prompts once; a second round means the
/// password was wrong, and repeating it would only burn the server's attempt budget.
struct PasswordPrompt<'a> {
    password: &'a Secret,
    rounds: u32,
}

impl ssh2::KeyboardInteractivePrompt for PasswordPrompt<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'b>],
    ) -> Vec<String> {
        if !prompts.is_empty() {
            self.rounds += 1;
        }
        prompts
            .iter()
            .map(|p| {
                if self.rounds == 1 && !p.echo {
                    self.password.expose().to_string()
                } else {
                    String::new()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
