//! Free ports for servers that tests and benchmarks start: probed here,
//! bound later by the server.

use std::net::{IpAddr, SocketAddr};

/// A free port on `ip`, released for a server to bind later (several
/// replicas on 127.0.0.2, .3, ... can then share it). See [`try_free_addr`].
pub fn free_addr(ip: impl Into<IpAddr>) -> SocketAddr {
    try_free_addr(ip).expect("a free port")
}

/// A free port on `ip`, below the kernel's range of ephemeral ports when it
/// can. The port is only probed here and bound later by a server, and an
/// outgoing connection given the same port meanwhile would take it (the
/// siege opens and closes thousands of connections; seen once, as "Address
/// already in use", right after its 10,000 idle connections). Ports outside
/// the range are given to no connection, so only another listener can take
/// one.
pub fn try_free_addr(ip: impl Into<IpAddr>) -> std::io::Result<SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    /// Where the search starts: after the ports of common services.
    const FIRST: u16 = 10_000;
    /// The next port to try, shared by every call in this process, starting
    /// at a place of its own so that concurrent processes seldom meet.
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let ip = ip.into();
    let below = ephemeral_ports_start().unwrap_or(FIRST);
    if below > FIRST {
        let span = u32::from(below - FIRST);
        let _ = NEXT.compare_exchange(0, std::process::id() % span + 1, Relaxed, Relaxed);
        for _ in 0..span.min(1_000) {
            let offset = NEXT.fetch_add(1, Relaxed) % span;
            let port = FIRST + u16::try_from(offset).unwrap_or(0);
            if let Ok(listener) = std::net::TcpListener::bind((ip, port)) {
                return listener.local_addr();
            }
        }
    }
    std::net::TcpListener::bind((ip, 0))?.local_addr()
}

/// The first port of the kernel's range for outgoing connections
/// (`net.ipv4.ip_local_port_range`), if it can be read.
fn ephemeral_ports_start() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_ephemeral_range_and_free() {
        let start = ephemeral_ports_start().expect("Linux says where its range starts");
        let ports: Vec<SocketAddr> = (0..20).map(|_| free_addr([127, 0, 0, 1])).collect();

        for addr in &ports {
            if start > 10_000 {
                assert!(addr.port() >= 10_000 && addr.port() < start, "{addr}");
            }
            std::net::TcpListener::bind(addr).unwrap_or_else(|err| panic!("{addr} is free: {err}"));
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "each call a new port");
    }
}
