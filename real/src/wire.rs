//! The wire protocol between the controller and its agents, and between agents.
//!
//! - Framing: a `u32` big-endian length, then a postcard body of at most
//!   [`MAX_FRAME`] bytes. A longer length, a body that does not decode, or a
//!   connection closed inside a frame is an error: the connection is closed
//!   (and logged); the process serving it goes on serving the others.
//! - Handshake, on every connection, before any other frame, with frames
//!   of at most [`HANDSHAKE_MAX_FRAME`] bytes: the dialer says
//!   [`Handshake::Hello`] (version, role, run id, a fresh nonce); the
//!   acceptor answers [`Handshake::Challenge`] with its own nonce and
//!   nothing else; the dialer proves the cluster cookie first
//!   ([`Handshake::Proof`], an HMAC-SHA256 over both nonces, the version,
//!   the run id and its role); only then does the acceptor prove it back
//!   ([`Handshake::Accepted`]: its machine and its own proof, under another
//!   label so one side's proof cannot be replayed as the other's). The
//!   cookie itself never crosses.
//!
//!   Why the dialer proves first: agents listen on a network, and anyone
//!   there may connect. An acceptor that proved first would hand every
//!   stranger an HMAC of the cookie to guess it offline; now a stranger
//!   gets a nonce and a refusal, nothing derived from the cookie, nor the
//!   run id or the machine (a wrong run id is refused without naming
//!   either). The dialer (the controller, or an agent dialing a peer) only
//!   dials addresses its own run started; an impostor there could collect
//!   the dialer's proof, which is why a user-chosen cookie must carry at
//!   least 128 bits (`DISTZERO_COOKIE`: 32 characters or more) so that
//!   offline guessing is hopeless, and a generated one carries 128 bits. A
//!   PAKE (SPAKE2, OPAQUE) would resist guessing even for weak secrets; it
//!   is not needed when weak secrets are refused.
//! - Before the handshake ends, the acceptor holds a connection for at most
//!   [`ACCEPT_HANDSHAKE_TIMEOUT`], reads frames of at most
//!   [`HANDSHAKE_MAX_FRAME`] bytes, and (in the agent) serves at most a
//!   fixed number of unauthenticated connections at once.
//! - After the handshake: the controller sends [`ToAgent`] and receives
//!   [`FromAgent`]; a peer agent (the dialer) sends [`PeerFrame`] one way: each
//!   agent dials its own connection to each peer it sends to, so the order of
//!   one TCP stream is the order per (sender, receiver) pair.

use distzero_core::clock::MachineClock;
use distzero_core::disk::DiskFault;
use distzero_core::ids::{MachineId, NodeId};
use distzero_core::net::{NetOp, NetState, Stamp};
use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::Sha256;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame body accepted or sent after the handshake: 16 MiB.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest frame body during the handshake (a hello with the longest run
/// id is about 110 bytes).
pub const HANDSHAKE_MAX_FRAME: usize = 256;
/// Longest run id (bytes) a hello may carry.
pub const MAX_RUN_ID: usize = 64;
/// Bumped on any incompatible change of the frames below.
pub const PROTOCOL_VERSION: u32 = 3;
/// A dialer's handshake that takes longer than this fails.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An acceptor drops a connection that has not proved the cookie by then.
pub const ACCEPT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest text from the other side kept in an error or a log line.
pub const MAX_PEER_TEXT: usize = 120;

/// Why a connection failed. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("connection closed by the other side")]
    Closed,
    #[error("handshake failed: {0}")]
    Auth(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

impl WireError {
    /// True when the other side failed (or refused) the cookie proof.
    pub fn is_auth(&self) -> bool {
        matches!(self, WireError::Auth(_))
    }
}

/// Who dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Controller,
    /// The agent of this machine, dialing to send its nodes' messages.
    Peer(MachineId),
}

pub type Nonce = [u8; 32];
pub type Proof = [u8; 32];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    Hello {
        version: u32,
        role: Role,
        run_id: String,
        nonce: Nonce,
    },
    /// The acceptor's nonce: nothing about the run, the agent or the cookie.
    Challenge { nonce: Nonce },
    /// The dialer's proof of the cookie.
    Proof { proof: Proof },
    /// The acceptor's machine and its proof of the cookie, sent only after
    /// the dialer's proof checked.
    Accepted { machine: MachineId, proof: Proof },
    /// Sent instead of the next step, then the connection closes.
    Refused { reason: String },
}

/// Orders from the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToAgent {
    /// Keeps the connection (and the agent) alive; no answer.
    Ping,
    /// A message from a client of the controller to a node of this machine.
    Deliver {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    /// A command, answered by [`FromAgent::Ack`] with the same `seq`.
    Cmd { seq: u64, cmd: Command },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Start the `local`-th node of this machine. `config` is JSON text
    /// (postcard cannot carry a `serde_json::Value`).
    Spawn {
        local: u32,
        kind: String,
        config: String,
    },
    /// Where peer agents listen (replaces the whole table).
    SetPeers { peers: Vec<(MachineId, SocketAddr)> },
    /// A change to the network model (`distzero_core::net`): the controller sends
    /// it to the agents at both ends of the pair it touches.
    Net { op: NetOp },
    /// The network as it is, for an agent that just (re)started: sent
    /// before any node is spawned.
    Join { state: NetState },
    /// A storage fault on this machine's disk (`distzero_core::disk`).
    Disk { fault: DiskFault },
    /// This machine's clocks as the controller's model has them now
    /// (`distzero_core::clock`): sent on every clock fault and on (re)start.
    Clock { clock: MachineClock },
    /// Flush logs and exit.
    Shutdown,
}

/// What an agent tells its controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FromAgent {
    /// `error` says what failed, for the controller to report.
    Ack { seq: u64, error: Option<String> },
    /// A node sent a message to a client of the controller.
    ToClient {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    /// `node` recorded an op into the run's history
    /// (`distzero_core::Context::record`), sent at once. `op` is its JSON
    /// (postcard cannot carry the op's untagged values), at most
    /// `distzero_core::history::MAX_OP_BYTES` long.
    Recorded { node: NodeId, op: String },
    /// A record that cannot reach the controller's history (an op over
    /// `MAX_OP_BYTES`, records lost while no controller was connected):
    /// the run's history is broken for this `reason`.
    RecordFailed { reason: String },
}

/// Agent to agent, one way (from the dialer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerFrame {
    Msg {
        from: NodeId,
        to: NodeId,
        /// Taken by the sender's network model; the receiver drops the
        /// message unless its own model gives the same stamp.
        stamp: Stamp,
        /// The message's id in message events, assigned by the sender (0
        /// when it logs none).
        id: u64,
        bytes: Vec<u8>,
    },
}

/// Append one frame (length prefix and body) to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    /// Appends to a borrowed buffer (postcard wants an owned `Extend`).
    struct Append<'a>(&'a mut Vec<u8>);
    impl Extend<u8> for Append<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0.extend(iter)
        }
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = postcard::to_extend(msg, Append(out)) {
        out.truncate(start);
        return Err(WireError::Malformed(format!("cannot encode: {e}")));
    }
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(WireError::TooLarge {
            len,
            limit: MAX_FRAME,
        });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Decode one frame from the front of `buf`: `Ok(None)` when more bytes are
/// needed, else the message and the number of bytes it used. Never panics.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, WireError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge {
            len,
            limit: MAX_FRAME,
        });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    decode_body(body).map(|m| Some((m, 4 + len)))
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((m, [])) => Ok(m),
        Ok((_, rest)) => Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

/// Read one frame. `Ok(None)`: the stream ended cleanly between frames.
pub async fn read_frame<T, R>(r: &mut R) -> Result<Option<T>, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_limited(r, MAX_FRAME).await
}

/// [`read_frame`] with a body of at most `limit` bytes (the handshake's
/// [`HANDSHAKE_MAX_FRAME`]): a longer length fails before any body is read.
pub async fn read_frame_limited<T, R>(r: &mut R, limit: usize) -> Result<Option<T>, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Malformed("stream ended inside a length".into()))
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > limit.min(MAX_FRAME) {
        return Err(WireError::TooLarge {
            len,
            limit: limit.min(MAX_FRAME),
        });
    }
    // Grow as bytes arrive rather than trusting the length with an allocation.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let n = r.take(len as u64).read_to_end(&mut body).await?;
    if n < len {
        return Err(WireError::Malformed(format!(
            "stream ended inside a frame ({n} of {len} bytes)"
        )));
    }
    decode_body(&body).map(Some)
}

/// Write one frame (no buffering beyond the one `write_all`).
pub async fn write_frame<T, W>(w: &mut W, msg: &T) -> Result<(), WireError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// At most [`MAX_PEER_TEXT`] characters of `text` from the other side.
pub fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_PEER_TEXT {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX_PEER_TEXT).collect();
    format!("{cut}… ({} bytes in all)", text.len())
}

async fn read_handshake<S: AsyncRead + Unpin>(s: &mut S) -> Result<Handshake, WireError> {
    match read_frame_limited::<Handshake, _>(s, HANDSHAKE_MAX_FRAME).await? {
        Some(Handshake::Refused { reason }) => Err(WireError::Auth(format!(
            "refused by the other side: {}",
            bounded(&reason)
        ))),
        Some(h) => Ok(h),
        None => Err(WireError::Closed),
    }
}

fn fresh_nonce() -> Nonce {
    use rand::RngCore;
    let mut n = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn role_bytes(role: Role) -> [u8; 5] {
    match role {
        Role::Controller => [0, 0, 0, 0, 0],
        Role::Peer(m) => {
            let b = m.0.to_be_bytes();
            [1, b[0], b[1], b[2], b[3]]
        }
    }
}

/// HMAC-SHA256 keyed by the cookie over a label and length-prefixed parts.
fn mac(cookie: &[u8], label: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(cookie).expect("HMAC takes keys of any length");
    m.update(b"distzero/");
    m.update(label.as_bytes());
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

struct Transcript<'a> {
    run_id: &'a str,
    role: Role,
    dialer_nonce: Nonce,
    acceptor_nonce: Nonce,
}

impl Transcript<'_> {
    /// The MAC of a proof; the acceptor's also binds its machine.
    fn mac(&self, cookie: &[u8], label: &str, acceptor: Option<MachineId>) -> Hmac<Sha256> {
        let machine = acceptor.map_or([0xff; 5], |m| {
            let b = m.0.to_be_bytes();
            [1, b[0], b[1], b[2], b[3]]
        });
        mac(
            cookie,
            label,
            &[
                &PROTOCOL_VERSION.to_be_bytes(),
                self.run_id.as_bytes(),
                &role_bytes(self.role),
                &machine,
                &self.dialer_nonce,
                &self.acceptor_nonce,
            ],
        )
    }
    fn proof(&self, cookie: &[u8], label: &str, acceptor: Option<MachineId>) -> Proof {
        self.mac(cookie, label, acceptor)
            .finalize()
            .into_bytes()
            .into()
    }
    fn check(
        &self,
        cookie: &[u8],
        label: &str,
        acceptor: Option<MachineId>,
        proof: &Proof,
    ) -> bool {
        self.mac(cookie, label, acceptor)
            .verify_slice(proof)
            .is_ok()
    }
}

const ACCEPTOR: &str = "acceptor";
const DIALER: &str = "dialer";

/// Dialer's side. Returns the machine of the acceptor (the controller checks
/// that it dialed the machine it meant).
pub async fn dial_handshake<S>(
    s: &mut S,
    cookie: &[u8],
    run_id: &str,
    role: Role,
) -> Result<MachineId, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial_inner(s, cookie, run_id, role)).await {
        Ok(r) => r,
        Err(_) => Err(WireError::Timeout("handshake")),
    }
}

async fn dial_inner<S>(
    s: &mut S,
    cookie: &[u8],
    run_id: &str,
    role: Role,
) -> Result<MachineId, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if run_id.len() > MAX_RUN_ID {
        return Err(WireError::Auth(format!(
            "run id of {} bytes is longer than {MAX_RUN_ID}",
            run_id.len()
        )));
    }
    let nonce = fresh_nonce();
    write_frame(
        s,
        &Handshake::Hello {
            version: PROTOCOL_VERSION,
            role,
            run_id: run_id.to_string(),
            nonce,
        },
    )
    .await?;
    let their_nonce = match read_handshake(s).await? {
        Handshake::Challenge { nonce } => nonce,
        other => return Err(unexpected("a challenge", &other)),
    };
    let t = Transcript {
        run_id,
        role,
        dialer_nonce: nonce,
        acceptor_nonce: their_nonce,
    };
    write_frame(
        s,
        &Handshake::Proof {
            proof: t.proof(cookie, DIALER, None),
        },
    )
    .await?;
    match read_handshake(s).await? {
        Handshake::Accepted { machine, proof } => {
            if t.check(cookie, ACCEPTOR, Some(machine), &proof) {
                Ok(machine)
            } else {
                Err(WireError::Auth(format!(
                    "{machine} could not prove the cluster cookie (an impostor, or a different DISTZERO_COOKIE)"
                )))
            }
        }
        other => Err(unexpected("acceptance", &other)),
    }
}

/// Acceptor's side (`me` is this agent's machine). Returns the dialer's
/// role. Gives up after [`ACCEPT_HANDSHAKE_TIMEOUT`].
pub async fn accept_handshake<S>(
    s: &mut S,
    cookie: &[u8],
    run_id: &str,
    me: MachineId,
) -> Result<Role, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(
        ACCEPT_HANDSHAKE_TIMEOUT,
        accept_inner(s, cookie, run_id, me),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(WireError::Timeout("handshake")),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, reason: &str) -> WireError {
    let _ = write_frame(
        s,
        &Handshake::Refused {
            reason: reason.to_string(),
        },
    )
    .await;
    WireError::Auth(reason.to_string())
}

async fn accept_inner<S>(
    s: &mut S,
    cookie: &[u8],
    run_id: &str,
    me: MachineId,
) -> Result<Role, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (role, their_nonce) = match read_handshake(s).await? {
        Handshake::Hello {
            version,
            role,
            run_id: theirs,
            nonce,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(refuse(
                    s,
                    &format!("protocol version {version}; this agent speaks {PROTOCOL_VERSION}"),
                )
                .await);
            }
            // Neither run id is named: a stranger learns nothing.
            if theirs != run_id {
                return Err(refuse(s, "this agent serves another run").await);
            }
            (role, nonce)
        }
        other => return Err(unexpected("hello", &other)),
    };
    let nonce = fresh_nonce();
    write_frame(s, &Handshake::Challenge { nonce }).await?;
    let proof = match read_handshake(s).await? {
        Handshake::Proof { proof } => proof,
        other => return Err(unexpected("a proof", &other)),
    };
    let t = Transcript {
        run_id,
        role,
        dialer_nonce: their_nonce,
        acceptor_nonce: nonce,
    };
    if !t.check(cookie, DIALER, None, &proof) {
        return Err(refuse(s, "cookie proof is wrong").await);
    }
    write_frame(
        s,
        &Handshake::Accepted {
            machine: me,
            proof: t.proof(cookie, ACCEPTOR, Some(me)),
        },
    )
    .await?;
    Ok(role)
}

/// The other side sent `got` where the handshake expects `expected`.
fn unexpected(expected: &str, got: &Handshake) -> WireError {
    WireError::Auth(format!("expected {expected}, got {}", step_name(got)))
}

fn step_name(h: &Handshake) -> &'static str {
    match h {
        Handshake::Hello { .. } => "hello",
        Handshake::Challenge { .. } => "challenge",
        Handshake::Proof { .. } => "proof",
        Handshake::Accepted { .. } => "accepted",
        Handshake::Refused { .. } => "refused",
    }
}

/// Socket options of every distzero connection: no Nagle delay, and
/// keepalive plus `TCP_USER_TIMEOUT` so that a link whose packets are dropped
/// (a real cut) breaks within a few seconds and the reconnect path runs.
pub fn tune_socket(s: &tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let sock = socket2::SockRef::from(s);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(5)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame<T: Serialize>(m: &T) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(m, &mut v).unwrap();
        v
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let a = ToAgent::Deliver {
            from: NodeId::client(1),
            to: NodeId::new(MachineId(2), 0),
            bytes: vec![1, 2, 3],
        };
        let b = ToAgent::Cmd {
            seq: 7,
            cmd: Command::Net {
                op: distzero_core::net::NetOp::Cut {
                    from: MachineId(0),
                    to: MachineId(1),
                },
            },
        };
        let mut buf = frame(&a);
        buf.extend(frame(&b));
        let (x, n) = decode_frame::<ToAgent>(&buf).unwrap().unwrap();
        assert_eq!(x, a);
        let (y, m) = decode_frame::<ToAgent>(&buf[n..]).unwrap().unwrap();
        assert_eq!(y, b);
        assert_eq!(n + m, buf.len());
        // Every strict prefix asks for more bytes.
        for i in 0..n {
            assert!(decode_frame::<ToAgent>(&buf[..i]).unwrap().is_none());
        }
    }

    #[test]
    fn the_largest_recorded_op_crosses_in_one_frame() {
        use distzero_core::history::{check_op_size, Op, F, MAX_OP_BYTES};
        use std::time::Duration;
        let node = NodeId::new(MachineId(1), 2);
        // As large as a history takes: the limit, less the rest of the JSON.
        let bare = Op::invoke(u64::MAX, F::Write, Some("k"), "", Duration::MAX).to_json();
        let op = Op::invoke(
            u64::MAX,
            F::Write,
            Some("k"),
            "x".repeat(MAX_OP_BYTES - bare.len()),
            Duration::MAX,
        );
        let json = op.to_json();
        assert_eq!(json.len(), MAX_OP_BYTES);
        assert!(check_op_size(node, &op, &json).is_ok());
        let rec = FromAgent::Recorded { node, op: json };
        let bytes = frame(&rec);
        assert!(bytes.len() < MAX_FRAME);
        let (back, n) = decode_frame::<FromAgent>(&bytes).unwrap().unwrap();
        assert_eq!((back, n), (rec, bytes.len()));
    }

    #[test]
    fn oversized_and_garbage_are_errors() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        assert!(matches!(
            decode_frame::<ToAgent>(&buf),
            Err(WireError::TooLarge { .. })
        ));
        buf = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_frame::<ToAgent>(&buf),
            Err(WireError::Malformed(_))
        ));
        let mut out = frame(&ToAgent::Ping);
        let before = out.clone();
        let big = PeerFrame::Msg {
            from: NodeId::client(0),
            to: NodeId::client(0),
            stamp: Stamp(0),
            id: 0,
            bytes: vec![0; MAX_FRAME + 1],
        };
        assert!(matches!(
            encode_frame(&big, &mut out),
            Err(WireError::TooLarge { .. })
        ));
        assert_eq!(out, before, "a refused frame leaves the batch as it was");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_reader_rejects_oversized_and_truncated() {
        let mut big: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<ToAgent, _>(&mut big).await,
            Err(WireError::TooLarge { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame::<ToAgent, _>(&mut short).await,
            Err(WireError::Malformed(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame::<ToAgent, _>(&mut empty)
            .await
            .unwrap()
            .is_none());
    }

    async fn pair(
        dial_cookie: &'static [u8],
        accept_cookie: &'static [u8],
    ) -> (Result<MachineId, WireError>, Result<Role, WireError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let d = async move {
            dial_handshake(&mut a, dial_cookie, "run1", Role::Peer(MachineId(4))).await
        };
        let acc =
            async move { accept_handshake(&mut b, accept_cookie, "run1", MachineId(9)).await };
        tokio::join!(d, acc)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn handshake_accepts_the_same_cookie_and_refuses_another() {
        let (d, a) = pair(b"secret", b"secret").await;
        assert_eq!(d.unwrap(), MachineId(9));
        assert_eq!(a.unwrap(), Role::Peer(MachineId(4)));
        let (d, a) = pair(b"secret", b"other").await;
        assert!(d.unwrap_err().is_auth());
        assert!(a.unwrap_err().is_auth());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn handshake_refuses_another_run_without_naming_either() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let d = async move { dial_handshake(&mut a, b"k", "run-a", Role::Controller).await };
        let acc = async move { accept_handshake(&mut b, b"k", "run-b", MachineId(0)).await };
        let (d, a) = tokio::join!(d, acc);
        let d = d.unwrap_err().to_string();
        assert_eq!(
            d,
            "handshake failed: refused by the other side: this agent serves another run"
        );
        let a = a.unwrap_err();
        assert!(a.is_auth(), "{a:?}");
        assert!(!a.to_string().contains("run-a") && !d.contains("run-b"));
    }

    /// A stranger (no cookie) who knows the run id gets a nonce and a
    /// refusal: no proof of the cookie to guess it offline from, no
    /// machine. The acceptor proves nothing before the dialer has.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stranger_learns_nothing_derived_from_the_cookie() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let acc = async move { accept_handshake(&mut b, b"secret", "run1", MachineId(7)).await };
        let stranger = async move {
            let hello = Handshake::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Controller,
                run_id: "run1".into(),
                nonce: [1; 32],
            };
            write_frame(&mut a, &hello).await.unwrap();
            let mut seen = vec![read_frame::<Handshake, _>(&mut a).await.unwrap().unwrap()];
            write_frame(&mut a, &Handshake::Proof { proof: [0; 32] })
                .await
                .unwrap();
            while let Ok(Some(h)) = read_frame::<Handshake, _>(&mut a).await {
                seen.push(h);
            }
            seen
        };
        let (acc, seen) = tokio::join!(acc, stranger);
        assert!(acc.unwrap_err().is_auth());
        assert!(matches!(seen[0], Handshake::Challenge { .. }), "{seen:?}");
        assert_eq!(
            seen[1..],
            [Handshake::Refused {
                reason: "cookie proof is wrong".into()
            }]
        );
    }

    /// Before the handshake, frames are tiny: a long length is refused
    /// before any body is read, and a long run id is never sent.
    #[tokio::test(flavor = "current_thread")]
    async fn handshake_frames_and_run_ids_are_bounded() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let acc = async move { accept_handshake(&mut b, b"k", "run1", MachineId(0)).await };
        let attacker = async move {
            // 16 MiB announced; the acceptor must not wait for (or hold) it.
            a.write_all(&(MAX_FRAME as u32).to_be_bytes())
                .await
                .unwrap();
            a
        };
        let (acc, _a) = tokio::join!(acc, attacker);
        assert!(
            matches!(
                acc,
                Err(WireError::TooLarge {
                    limit: HANDSHAKE_MAX_FRAME,
                    ..
                })
            ),
            "{acc:?}"
        );
        let (mut a, _b) = tokio::io::duplex(4096);
        let long = "r".repeat(MAX_RUN_ID + 1);
        let e = dial_handshake(&mut a, b"k", &long, Role::Controller)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("longer than 64"), "{e}");
        // The longest hello fits the handshake's limit.
        let hello = Handshake::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Peer(MachineId(u32::MAX - 1)),
            run_id: "r".repeat(MAX_RUN_ID),
            nonce: [0xff; 32],
        };
        let mut buf = Vec::new();
        encode_frame(&hello, &mut buf).unwrap();
        assert!(buf.len() - 4 <= HANDSHAKE_MAX_FRAME, "{}", buf.len());
        // Text from the other side is cut short in errors and logs.
        let b = bounded(&"x".repeat(10_000));
        assert!(b.len() < 200 && b.ends_with("(10000 bytes in all)"), "{b}");
    }

    /// A silent connection is dropped after the acceptor's deadline.
    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_connection_is_dropped_at_the_deadline() {
        let (_a, mut b) = tokio::io::duplex(4096);
        let e = accept_handshake(&mut b, b"k", "run1", MachineId(0))
            .await
            .unwrap_err();
        assert!(matches!(e, WireError::Timeout("handshake")), "{e:?}");
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame::<ToAgent>(&bytes);
            let _ = decode_frame::<FromAgent>(&bytes);
            let _ = decode_frame::<PeerFrame>(&bytes);
            let _ = decode_frame::<Handshake>(&bytes);
        }

        #[test]
        fn decoder_rejects_any_oversized_length(len in (MAX_FRAME as u32 + 1)..=u32::MAX, tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend(tail);
            prop_assert!(
                matches!(decode_frame::<ToAgent>(&bytes), Err(WireError::TooLarge { .. })),
                "oversized frame accepted"
            );
        }

        #[test]
        fn arbitrary_bodies_in_a_valid_frame_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
            bytes.extend(&body);
            match decode_frame::<ToAgent>(&bytes) {
                Ok(Some((_, n))) => prop_assert_eq!(n, bytes.len()),
                Ok(None) => prop_assert!(false, "a whole frame must decode or fail"),
                Err(_) => {}
            }
        }
    }
}
