//! Socket tasks of an agent: accept and authenticate connections, read
//! frames into the host loop, write frames out in batches, dial peers.
//! Nothing here touches a node; a failing connection is logged and closed,
//! and the agent keeps serving the others.

use crate::wire::{self, FromAgent, PeerFrame, Role, ToAgent, WireError};
use distzero_core::ids::{MachineId, NodeId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What socket tasks tell the host loop.
pub(crate) enum Event {
    ControllerUp {
        conn: u64,
        tx: UnboundedSender<FromAgent>,
        writer: tokio::task::JoinHandle<()>,
    },
    Control {
        conn: u64,
        frame: ToAgent,
    },
    ControllerDown {
        conn: u64,
    },
    /// From the inbound link `conn` of a peer; a newer link from the same
    /// peer makes older ones stale (their leftovers are dropped, never
    /// delivered after newer messages).
    Peer {
        conn: u64,
        from: NodeId,
        to: NodeId,
        stamp: distzero_core::net::Stamp,
        id: u64,
        bytes: Vec<u8>,
    },
}

/// Identity shared by every task of one agent.
pub(crate) struct Ident {
    pub machine: MachineId,
    pub run_id: String,
    pub cookie: String,
    /// Addresses of the run's peers and of its controller (once it proved
    /// the cookie): exempt from [`MAX_UNAUTHENTICATED_PER_IP`], so a burst
    /// of dials from machines sharing a host is never turned away.
    pub known: std::sync::RwLock<Known>,
}

/// See [`Ident::known`].
#[derive(Default)]
pub(crate) struct Known {
    peers: BTreeSet<IpAddr>,
    controller: Option<IpAddr>,
}

impl Ident {
    fn is_known(&self, ip: IpAddr) -> bool {
        let k = self.known.read().unwrap_or_else(|e| e.into_inner());
        k.controller == Some(ip) || k.peers.contains(&ip)
    }

    /// The run's peers are now at `peers`.
    pub fn set_peers(&self, peers: impl IntoIterator<Item = IpAddr>) {
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        k.peers = peers.into_iter().collect();
    }

    fn set_controller(&self, ip: IpAddr) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .controller = Some(ip);
    }
}

/// Bytes gathered before one write when frames are queued.
const BATCH: usize = 256 * 1024;

/// Connections that have not proved the cookie yet, served at once; more
/// are closed as they come (each holds at most a handshake frame and a
/// task, for at most `wire::ACCEPT_HANDSHAKE_TIMEOUT`).
pub const MAX_UNAUTHENTICATED: usize = 64;

/// Of those, at most this many from one address that is not a known peer
/// or the controller's: a flood from another host cannot take every slot,
/// so peers and the controller still get in while it lasts.
pub const MAX_UNAUTHENTICATED_PER_IP: usize = 8;
// Several flooding hosts must leave room for the run's own.
const _: () = assert!(MAX_UNAUTHENTICATED_PER_IP * 4 <= MAX_UNAUTHENTICATED);

/// Unauthenticated connections per source address (at most
/// [`MAX_UNAUTHENTICATED`] entries: one per pending connection at worst).
type Pending = Arc<std::sync::Mutex<BTreeMap<IpAddr, usize>>>;

/// A slot of an unauthenticated connection: its share of the global cap
/// and of its address's; dropping it (handshake done or failed) frees both.
struct Unauthenticated {
    _permit: tokio::sync::OwnedSemaphorePermit,
    ip: IpAddr,
    pending: Pending,
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = p.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.ip);
            }
        }
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    ident: Arc<Ident>,
    events: UnboundedSender<Event>,
) {
    let mut next_conn = 0u64;
    let unauthenticated = Arc::new(tokio::sync::Semaphore::new(MAX_UNAUTHENTICATED));
    let pending: Pending = Arc::default();
    let mut turned_away = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let ip = addr.ip();
                let slot = {
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    let from_ip = p.get(&ip).copied().unwrap_or(0);
                    match unauthenticated.clone().try_acquire_owned() {
                        Ok(permit)
                            if from_ip < MAX_UNAUTHENTICATED_PER_IP || ident.is_known(ip) =>
                        {
                            p.insert(ip, from_ip + 1);
                            Some(Unauthenticated {
                                _permit: permit,
                                ip,
                                pending: pending.clone(),
                            })
                        }
                        _ => None,
                    }
                };
                let Some(permit) = slot else {
                    // Closed at once: no task, no buffer. Logged sparingly.
                    turned_away += 1;
                    if turned_away.is_power_of_two() {
                        tracing::warn!(%addr, turned_away, "too many unauthenticated connections (from this address, or in all); closing new ones");
                    }
                    drop(stream);
                    continue;
                };
                next_conn += 1;
                let conn = next_conn;
                tokio::spawn(serve(
                    stream,
                    addr,
                    conn,
                    ident.clone(),
                    events.clone(),
                    permit,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    conn: u64,
    ident: Arc<Ident>,
    events: UnboundedSender<Event>,
    unauthenticated: Unauthenticated,
) {
    wire::tune_socket(&stream);
    let role = match wire::accept_handshake(
        &mut stream,
        ident.cookie.as_bytes(),
        &ident.run_id,
        ident.machine,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%addr, error = %wire::bounded(&e.to_string()), "refused a connection");
            return;
        }
    };
    drop(unauthenticated);
    let (mut rd, wr) = stream.into_split();
    match role {
        Role::Controller => {
            tracing::info!(%addr, conn, "controller connected");
            ident.set_controller(addr.ip());
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let writer = tokio::spawn(write_batched(wr, rx, "controller"));
            if events
                .send(Event::ControllerUp { conn, tx, writer })
                .is_err()
            {
                return;
            }
            loop {
                match wire::read_frame::<ToAgent, _>(&mut rd).await {
                    Ok(Some(frame)) => {
                        if events.send(Event::Control { conn, frame }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        tracing::info!(%addr, conn, "controller closed its connection");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%addr, conn, error = %e, "closing the controller connection");
                        break;
                    }
                }
            }
            let _ = events.send(Event::ControllerDown { conn });
        }
        Role::Peer(peer) => {
            tracing::info!(%addr, %peer, "peer link in");
            // The acceptor never writes after the handshake; keeping the write
            // half open keeps the connection up.
            let _wr = wr;
            loop {
                match wire::read_frame::<PeerFrame, _>(&mut rd).await {
                    Ok(Some(PeerFrame::Msg {
                        from,
                        to,
                        stamp,
                        id,
                        bytes,
                    })) => {
                        if from.machine != peer || to.machine != ident.machine {
                            tracing::warn!(%peer, %from, %to, "peer sent a message it may not send; closing its link");
                            return;
                        }
                        if events
                            .send(Event::Peer {
                                conn,
                                from,
                                to,
                                stamp,
                                id,
                                bytes,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => {
                        tracing::info!(%peer, "peer link in closed");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing a peer link in");
                        return;
                    }
                }
            }
        }
    }
}

/// Write frames from `rx`, gathering every queued frame into one write.
/// Ends when `rx` closes (after writing what it held) or a write fails.
pub(crate) async fn write_batched<T: Serialize>(
    mut wr: OwnedWriteHalf,
    mut rx: UnboundedReceiver<T>,
    what: &'static str,
) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        push(&first, &mut buf, what);
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(f) => push(&f, &mut buf, what),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&buf).await {
            tracing::warn!(error = %e, "writing to the {what} failed; connection closed");
            return;
        }
    }
    let _ = wr.shutdown().await;
}

fn push<T: Serialize>(frame: &T, buf: &mut Vec<u8>, what: &str) {
    if let Err(e) = wire::encode_frame(frame, buf) {
        tracing::error!(error = %e, "a frame to the {what} was not sent");
    }
}

/// Dial `addr` and pass the handshake as `role`.
pub(crate) async fn dial(
    addr: SocketAddr,
    cookie: &str,
    run_id: &str,
    role: Role,
    connect_timeout: Duration,
) -> Result<(TcpStream, MachineId), WireError> {
    let mut s = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(WireError::Timeout("connect")),
    };
    wire::tune_socket(&s);
    let m = wire::dial_handshake(&mut s, cookie.as_bytes(), run_id, role).await?;
    Ok((s, m))
}

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The link to one peer agent: dial on the first frame, write in batches,
/// re-dial with backoff. Frames queued when a dial fails or the link breaks
/// are lost (at most once). Ends when the host drops `rx`.
pub(crate) async fn peer_link(
    ident: Arc<Ident>,
    to: MachineId,
    addr: SocketAddr,
    mut rx: tokio::sync::mpsc::Receiver<PeerFrame>,
) {
    let mut backoff = BACKOFF_MIN;
    let me = ident.machine;
    loop {
        let Some(first) = rx.recv().await else { return };
        let (stream, who) = match dial(
            addr,
            &ident.cookie,
            &ident.run_id,
            Role::Peer(me),
            Duration::from_secs(2),
        )
        .await
        {
            Ok(x) => x,
            Err(e) => {
                let mut lost = 1;
                while rx.try_recv().is_ok() {
                    lost += 1;
                }
                tracing::warn!(peer = %to, %addr, error = %e, lost, retry_in_ms = backoff.as_millis() as u64, "peer link dial failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if who != to {
            tracing::warn!(peer = %to, %addr, answered = %who, "the wrong machine answered at a peer address");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        }
        backoff = BACKOFF_MIN;
        tracing::info!(peer = %to, %addr, "peer link out up");
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = Vec::new();
        push(&first, &mut buf, "peer");
        let mut scratch = [0u8; 64];
        'conn: loop {
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(f) => push(&f, &mut buf, "peer"),
                    Err(_) => break,
                }
            }
            if buf.is_empty() {
                tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => push(&f, &mut buf, "peer"),
                        None => { let _ = wr.shutdown().await; return; }
                    },
                    r = rd.read(&mut scratch) => {
                        // The acceptor never writes: EOF or an error means the link is gone.
                        tracing::info!(peer = %to, result = ?r, "peer link out closed by the other side");
                        break 'conn;
                    }
                }
                continue;
            }
            if let Err(e) = wr.write_all(&buf).await {
                tracing::warn!(peer = %to, error = %e, "peer link out broke; queued messages are lost");
                break 'conn;
            }
            buf.clear();
        }
    }
}
