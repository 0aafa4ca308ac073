//! A TCP proxy for every ordered pair of nodes, so a test can cut or slow the link
//! between two chosen nodes while both keep running.
//!
//! Node `i` reaches node `j` through its own proxy `(i, j)` (its config's
//! `peer_addresses`), which forwards to `j`'s real listen address. A link is one
//! unordered pair: cutting `{i, j}` stalls both proxies between them in both directions.
//! Stalled means what a network that drops packets does to TCP: nothing is read or
//! delivered (bytes wait in the kernel's buffers, senders block), and when the link
//! heals the same connections carry on, unless an end gave up meanwhile. A delay holds
//! every chunk for the given time before delivering it, in order.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How a link between two nodes behaves now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LinkState {
    cut: bool,
    delay: Duration,
}

type Links = Arc<Mutex<BTreeMap<(usize, usize), LinkState>>>;

fn link(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The proxies; dropping the mesh stops accepting and closes every proxied connection.
#[derive(Debug)]
pub struct Mesh {
    /// `(from, to)` -> the address `from` dials to reach `to`.
    addresses: BTreeMap<(usize, usize), SocketAddr>,
    links: Links,
    stop: Arc<AtomicBool>,
}

impl Mesh {
    /// Starts a proxy for each ordered pair of `targets` (the nodes' p2p addresses).
    pub fn start(targets: &[SocketAddr]) -> std::io::Result<Mesh> {
        let links: Links = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut addresses = BTreeMap::new();
        for from in 0..targets.len() {
            for (to, target) in targets.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0")?;
                listener.set_nonblocking(true)?;
                addresses.insert((from, to), listener.local_addr()?);
                let (links, stop, target) = (links.clone(), stop.clone(), *target);
                thread::spawn(move || accept(listener, target, link(from, to), links, stop));
            }
        }
        Ok(Mesh {
            addresses,
            links,
            stop,
        })
    }

    /// The address node `from` should use for node `to`.
    pub fn address(&self, from: usize, to: usize) -> SocketAddr {
        self.addresses[&(from, to)]
    }

    /// Stops all traffic between `a` and `b`, or lets it flow again.
    pub fn set_cut(&self, a: usize, b: usize, cut: bool) {
        self.links
            .lock()
            .expect("lock")
            .entry(link(a, b))
            .or_default()
            .cut = cut;
    }

    /// Holds every chunk between `a` and `b` for `delay` (zero: none).
    pub fn set_delay(&self, a: usize, b: usize, delay: Duration) {
        self.links
            .lock()
            .expect("lock")
            .entry(link(a, b))
            .or_default()
            .delay = delay;
    }

    /// Every link back to normal.
    pub fn heal(&self) {
        self.links.lock().expect("lock").clear();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn state(links: &Links, pair: (usize, usize)) -> LinkState {
    links
        .lock()
        .expect("lock")
        .get(&pair)
        .copied()
        .unwrap_or_default()
}

fn accept(
    listener: TcpListener,
    target: SocketAddr,
    pair: (usize, usize),
    links: Links,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((inbound, _)) => {
                // A node that is down refuses: so does its proxy, by closing.
                let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                else {
                    continue;
                };
                let _ = inbound.set_nonblocking(false);
                for (from, to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let (links, stop) = (links.clone(), stop.clone());
                        thread::spawn(move || forward(from, to, pair, links, stop));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One direction of one connection: a reader that honours cuts and stamps each chunk
/// with its delivery time, and a writer that delivers chunks when due.
fn forward(
    mut from: TcpStream,
    to: TcpStream,
    pair: (usize, usize),
    links: Links,
    stop: Arc<AtomicBool>,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let mut to = to.try_clone().expect("clone a connected socket");
        let (links, stop) = (links.clone(), stop.clone());
        thread::spawn(move || {
            for (at, chunk) in due {
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
                // A chunk in flight when the link was cut is held, not delivered.
                while state(&links, pair).cut && !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(10));
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let link = state(&links, pair);
        if link.cut {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if chunks
                    .send((Instant::now() + link.delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    drop(chunks);
    let _ = writer.join();
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message)?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn a_cut_link_stalls_and_a_healed_one_carries_on() {
        let server = echo_server();
        let mesh = Mesh::start(&[server, server]).expect("mesh");
        let mut stream = TcpStream::connect(mesh.address(0, 1)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert_eq!(round_trip(&mut stream, b"hello").expect("echo"), b"hello");

        mesh.set_cut(1, 0, true);
        let err = round_trip(&mut stream, b"stuck").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        mesh.heal();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut late = [0u8; 5];
        stream
            .read_exact(&mut late)
            .expect("delivered after healing");
        assert_eq!(&late, b"stuck");
    }

    #[test]
    fn a_delayed_link_delivers_late_and_in_order() {
        let server = echo_server();
        let mesh = Mesh::start(&[server, server]).expect("mesh");
        mesh.set_delay(0, 1, Duration::from_millis(150));
        let mut stream = TcpStream::connect(mesh.address(1, 0)).expect("connect");
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").expect("echo"), b"slow");
        // Through the proxy and back: delayed twice.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
}
