//! Client source addresses for loads past one address's port range: which 127.0.0.x each
//! connection comes from, fresh addresses for every run, and connecting from one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// Connections per source address at most: the ephemeral port range (32768–60999) holds about
/// 28,000 per address.
pub const PER_SOURCE_ADDRESS: usize = 25_000;

/// Connections per source address by default. The kernel finds a free port for a new connection
/// more slowly the fuller one source address's port range is (measured: 19,000 connections from
/// one 127.0.0.x connect at about 2,600 per second, from two at about 13,000), so workers spread
/// over several.
pub const DEFAULT_PER_SOURCE: usize = 5_000;

/// The source address of connection `i` when each address takes `per_source` connections.
pub fn source_for(first: Ipv4Addr, i: usize, per_source: usize) -> Ipv4Addr {
    let [a, b, c, d] = first.octets();
    let step = (i / per_source.clamp(1, PER_SOURCE_ADDRESS)) as u8;
    Ipv4Addr::new(a, b, c, d.saturating_add(step))
}

/// Hands out client source addresses 127.0.0.2 to 127.0.0.250, fresh for every run, so the
/// TIME_WAIT pairs a run leaves behind (clients close first) never crowd the next one.
#[derive(Debug)]
pub struct Sources {
    next: u8,
}

impl Default for Sources {
    fn default() -> Self {
        Sources { next: 2 }
    }
}

impl Sources {
    /// The first of `count` consecutive addresses.
    pub fn take(&mut self, count: usize) -> Ipv4Addr {
        let count = count.clamp(1, 200) as u8;
        if self.next.saturating_add(count) > 250 {
            self.next = 2;
        }
        let first = Ipv4Addr::new(127, 0, 0, self.next);
        self.next += count;
        first
    }
}

/// Lets a socket bound to a source address take its port at `connect`, where only the whole
/// address pair must be unique (and, on loopback, a TIME_WAIT pair can be reused), instead of at
/// `bind`, where each source address has one port range for every destination and ports in
/// TIME_WAIT from an earlier run are unusable.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is owned by `socket` and open; the option value is a c_int that lives
    // across the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &TcpSocket) -> std::io::Result<()> {
    Ok(())
}

/// Connects to `target`, from `source` if given (port chosen at connect), with `TCP_NODELAY`.
pub async fn connect_from(
    target: SocketAddr,
    source: Option<Ipv4Addr>,
) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let (Some(src), true) = (source, target.is_ipv4()) {
        bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_step_every_block() {
        let first = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(source_for(first, 0, 5000), first);
        assert_eq!(source_for(first, 4999, 5000), first);
        assert_eq!(source_for(first, 5000, 5000), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(source_for(first, 12_000, 5000), Ipv4Addr::new(127, 0, 0, 4));
        // Never more than the port range allows per address.
        assert_eq!(
            source_for(first, PER_SOURCE_ADDRESS, usize::MAX),
            Ipv4Addr::new(127, 0, 0, 3)
        );
    }

    #[test]
    fn sources_are_fresh_per_run_and_wrap() {
        let mut s = Sources::default();
        assert_eq!(s.take(1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(s.take(2), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(s.take(1), Ipv4Addr::new(127, 0, 0, 5));
        for _ in 0..300 {
            let a = s.take(3);
            assert!((2..=247).contains(&a.octets()[3]), "{a}");
        }
    }
}
