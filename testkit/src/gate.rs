//! Firewall enforcement for the fakes: the cloud's firewall decides whether the loopback
//! sshd playing a server is reachable.
//!
//! With [`Gates`] handed to a fake (`enforce_firewalls`), every server it creates gets
//! its own loopback address (127.77.x.y) instead of 127.0.0.1. On that address a
//! listener per exposed port accepts each TCP connection, asks the fake's verdict
//! (server address, port, client address: the fake reads the firewall attached to the
//! server, its rules and default policy) and either forwards it to the backend (the
//! sshd) or closes it at once, as a dropped SYN would end the client's attempt. The
//! verdict is taken per connection: established connections survive a rule change, as
//! with the clouds' stateful firewalls. The sshd sees the forwarder's connection from
//! 127.0.0.1, which is also the client address the verdict is asked about, so what the
//! node reports in `SSH_CONNECTION` is what the firewall judges.
//!
//! The listeners stop when the [`Gates`] is dropped (they poll a flag between accepts).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Whether a TCP connection to `(server address, port)` from `client` gets through.
pub type Verdict = Arc<dyn Fn(Ipv4Addr, u16, IpAddr) -> bool + Send + Sync>;

/// Addresses handed out across every fake of the process: 127.77.0.1, 127.77.0.2, ...
static NEXT: AtomicU32 = AtomicU32::new(1);

/// The forwarders of one fake: the ports it exposes on each server's address and where
/// each leads.
pub struct Gates {
    ports: Vec<(u16, SocketAddr)>,
    stop: Arc<AtomicBool>,
    opened: Mutex<Vec<Ipv4Addr>>,
}

impl Gates {
    /// `ports`: each server listens on these ports, forwarding to the given backend
    /// (typically the sshd's port to the sshd, and a spare port to the same sshd, to
    /// show that a port no rule allows is blocked).
    pub fn new(ports: Vec<(u16, SocketAddr)>) -> Arc<Gates> {
        Arc::new(Gates {
            ports,
            stop: Arc::new(AtomicBool::new(false)),
            opened: Mutex::new(Vec::new()),
        })
    }

    /// A fresh loopback address with a listener on every port, each connection judged
    /// by `verdict`. Panics when no address can be bound (the test cannot go on).
    pub fn open(&self, verdict: Verdict) -> Ipv4Addr {
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let addr = Ipv4Addr::new(127, 77, (n >> 8) as u8, (n & 0xff) as u8);
            if n & 0xff == 0 {
                continue;
            }
            let listeners: Result<Vec<_>, _> = self
                .ports
                .iter()
                .map(|(port, backend)| {
                    TcpListener::bind((addr, *port)).map(|l| (l, *port, *backend))
                })
                .collect();
            let Ok(listeners) = listeners else {
                continue;
            };
            for (listener, port, backend) in listeners {
                let verdict = verdict.clone();
                let stop = self.stop.clone();
                thread::Builder::new()
                    .name(format!("gate-{addr}:{port}"))
                    .spawn(move || serve(listener, addr, port, backend, verdict, stop))
                    .expect("spawn a gate thread");
            }
            self.opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(addr);
            return addr;
        }
        panic!("no free loopback address for a gated server");
    }

    /// Every address opened so far.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Gates {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    listener: TcpListener,
    addr: Ipv4Addr,
    port: u16,
    backend: SocketAddr,
    verdict: Verdict,
    stop: Arc<AtomicBool>,
) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, peer)) => {
                if !verdict(addr, port, peer.ip()) {
                    // Dropped: closed before a byte is exchanged.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                thread::spawn(move || forward(client, backend));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn forward(client: TcpStream, backend: SocketAddr) {
    let Ok(server) = TcpStream::connect(backend) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pump(client, server));
    pump(s2, c2);
    let _ = up.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Whether the network `cidr` contains `addr` (the fakes' rule matching).
pub fn covers(cidr: &str, addr: IpAddr) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Whether `port` is in a rule's port text: `22`, `8000-8100`, or none (every port).
pub fn port_in(spec: Option<&str>, port: u16) -> bool {
    let Some(spec) = spec else {
        return true;
    };
    match spec.split_once('-') {
        Some((a, b)) => match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&port),
            _ => false,
        },
        None => spec.trim().parse::<u16>() == Ok(port),
    }
}

/// What a client sees on `(addr, port)` within `timeout`: the first bytes the server
/// sends (an sshd's banner), or `None` when the connection is refused, closed before a
/// byte or silent.
pub fn first_bytes(addr: IpAddr, port: u16, timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(addr, port), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(buf[..n].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_networks_and_ports() {
        assert!(covers("127.0.0.1/32", "127.0.0.1".parse().unwrap()));
        assert!(!covers("127.0.0.1/32", "127.0.0.2".parse().unwrap()));
        assert!(covers("0.0.0.0/0", "192.0.2.1".parse().unwrap()));
        assert!(!covers("::/0", "192.0.2.1".parse().unwrap()));
        assert!(port_in(Some("22"), 22));
        assert!(port_in(Some("8000-8100"), 8080));
        assert!(!port_in(Some("8000-8100"), 22));
        assert!(port_in(None, 22));
    }
}
