//! A fault-injecting TCP link between the proxies and a backend server the harness started, so
//! scenario steps can make the network fail the way networks do: `fault: { network: latency, ms,
//! jitter_ms }` delays every answer from the server, `bandwidth` (`kbps`) slows both directions,
//! `blackhole` delivers nothing either way (data waits, as TCP's retransmissions would, and new
//! connections get no answer), `reset` resets every open connection (RST), and `restore` clears
//! the condition. While the server is stopped the link refuses connections too ([`NetLink::refuse`]),
//! so the proxies see what they would see without it. (noxious, the Rust port of Toxiproxy, is a
//! server whose toxics are private to it, so the harness keeps this small link of its own.)

use crate::scenario::model::NetworkFault;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One link: a listener on a loopback port that relays to the server's address.
#[derive(Debug)]
pub struct NetLink {
    addr: SocketAddr,
    server: SocketAddr,
    shared: Arc<Shared>,
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What every connection of a link shares: the condition, the resets, and when each direction of
/// the wire is free again (bandwidth is the link's, not each connection's).
#[derive(Debug)]
struct Shared {
    condition: watch::Sender<NetworkFault>,
    resets: watch::Sender<u64>,
    free: [Mutex<Instant>; 2],
}

impl Drop for NetLink {
    fn drop(&mut self) {
        if let Some(task) = self.accepting().take() {
            task.abort();
        }
    }
}

impl NetLink {
    /// Listens on a free loopback port and relays each connection to `server`.
    pub async fn start(server: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let link = Self {
            addr: listener.local_addr()?,
            server,
            shared: Arc::new(Shared {
                condition: watch::channel(NetworkFault::Restore).0,
                resets: watch::channel(0).0,
                free: [Mutex::new(Instant::now()), Mutex::new(Instant::now())],
            }),
            accepting: Mutex::default(),
        };
        link.serve(listener);
        Ok(link)
    }

    fn accepting(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::JoinHandle<()>>> {
        self.accepting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&self, listener: TcpListener) {
        let task = tokio::spawn(accept(listener, self.server, self.shared.clone()));
        if let Some(old) = self.accepting().replace(task) {
            old.abort();
        }
    }

    /// Stops listening, so new connections are refused as the stopped server would refuse them
    /// (open ones end as the server ends them).
    pub fn refuse(&self) {
        if let Some(task) = self.accepting().take() {
            task.abort();
        }
    }

    /// Listens again on the same port (after [`NetLink::refuse`]; a no-op while listening).
    pub async fn accept(&self) -> std::io::Result<()> {
        if self.accepting().is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// The port the proxies connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Does what a `fault: { network: … }` step says: a latency, bandwidth or blackhole
    /// condition holds from now on (until `restore`); `reset` resets every connection open now
    /// (new ones are relayed as usual).
    pub fn apply(&self, fault: NetworkFault) {
        match fault {
            NetworkFault::Reset => self.shared.resets.send_modify(|n| *n += 1),
            condition => {
                self.shared.condition.send_replace(condition);
            }
        }
    }
}

async fn accept(listener: TcpListener, server: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let mut reset = shared.resets.subscribe();
        reset.mark_unchanged();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(server).await else {
                // The server is down: the client's connection is reset, the nearest a link that
                // already accepted it comes to a refusal.
                let _ = client.set_zero_linger();
                return;
            };
            relay(client, upstream, shared, reset).await;
        });
    }
}

/// Relays one connection until either side closes it or the link resets it.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    shared: Arc<Shared>,
    mut reset: watch::Receiver<u64>,
) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let client_socket = socket2::SockRef::from(&client).try_clone().ok();
    let server_socket = socket2::SockRef::from(&server).try_clone().ok();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, shared.clone(), Direction::Up);
    let down = pump(server_read, client_write, shared, Direction::Down);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = reset.changed() => {
            // SO_LINGER 0: closing (the halves here, the copies as this returns) sends RST.
            for socket in [&client_socket, &server_socket].into_iter().flatten() {
                let _ = socket.set_linger(Some(Duration::ZERO));
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Proxy to server.
    Up = 0,
    /// Server to proxy: where latency applies.
    Down = 1,
}

/// Copies one direction: a reader queues chunks with their arrival time, a writer delivers each
/// when the condition lets it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    direction: Direction,
) {
    let condition = shared.condition.subscribe();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let write = async move {
        let mut condition = condition;
        let mut last_due = Instant::now();
        while let Some((arrived, chunk)) = rx.recv().await {
            // Held while the link is a black hole.
            while *condition.borrow_and_update() == NetworkFault::Blackhole {
                if condition.changed().await.is_err() {
                    return;
                }
            }
            let now = *condition.borrow();
            if let (NetworkFault::Latency { ms, jitter_ms }, Direction::Down) = (now, direction) {
                let due = (arrived + jittered(ms, jitter_ms)).max(last_due);
                last_due = due;
                tokio::time::sleep_until(due).await;
            }
            if let NetworkFault::Bandwidth { kbps } = now {
                // The chunk is through once the wire has carried it, after what went before it
                // on any connection.
                let takes =
                    Duration::from_millis((chunk.len() as u64 * 1000).div_ceil(kbps.max(1) * 125));
                let through = {
                    let mut free = shared.free[direction as usize]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *free = (*free).max(Instant::now()) + takes;
                    *free
                };
                tokio::time::sleep_until(through).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// `ms` moved by a uniformly random amount within `jitter_ms` either way (never below zero).
fn jittered(ms: u64, jitter_ms: u64) -> Duration {
    let spread = if jitter_ms == 0 {
        0
    } else {
        rand::Rng::gen_range(&mut rand::thread_rng(), 0..=2 * jitter_ms)
    };
    Duration::from_millis((ms + spread).saturating_sub(jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(text).await?;
        let mut got = vec![0u8; text.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn the_link_delays_holds_and_resets_as_told() {
        let link = NetLink::start(echo_server().await).await.expect("link");
        let mut s = TcpStream::connect(("127.0.0.1", link.port()))
            .await
            .expect("connect");
        assert_eq!(round_trip(&mut s, b"clear").await.expect("echo"), b"clear");

        link.apply(NetworkFault::Latency {
            ms: 150,
            jitter_ms: 0,
        });
        let started = Instant::now();
        round_trip(&mut s, b"late").await.expect("echo");
        assert!(started.elapsed() >= Duration::from_millis(150));

        link.apply(NetworkFault::Blackhole);
        let held = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut s, b"held"));
        assert!(held.await.is_err(), "nothing passes a black hole");
        link.apply(NetworkFault::Restore);
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.expect("the held bytes arrive");
        assert_eq!(&got, b"held");

        link.apply(NetworkFault::Reset);
        let mut buf = [0u8; 1];
        let after = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        assert!(
            matches!(after, Ok(Err(_)) | Ok(Ok(0))),
            "a reset connection ends: {after:?}"
        );
        let mut again = TcpStream::connect(("127.0.0.1", link.port()))
            .await
            .expect("connect");
        assert_eq!(round_trip(&mut again, b"new").await.expect("echo"), b"new");
    }
}
