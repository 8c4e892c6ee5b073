//! A real agent (in this process, on 127.0.0.1) under an authenticated
//! controller that sends whatever frames the input decodes to: spawns of
//! unknown kinds and bad configs, deliveries to nodes that do not exist,
//! network changes of any pair, shutdowns. The agent must answer every
//! command or refuse it, never panic; after each input it is still up and
//! answers a fresh controller. (One agent serves every input of a run.)
#![no_main]

use distzero_core::ids::MachineId;
use distzero_real::agent::{run_agent, AgentConfig, StopHandle};
use distzero_real::wire::{self, decode_frame, Role, ToAgent};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

const COOKIE: &str = "fuzz-cookie-0123456789abcdef0123456789";

fn agent() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("distzero-fuzz-agent-{}", std::process::id()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = AgentConfig {
            machine: MachineId(0),
            run_id: "fuzz".into(),
            cookie: COOKIE.into(),
            seed: 1,
            listen: addr,
            listener: Some(listener),
            epoch_micros: 0,
            orphan: Duration::from_secs(3600),
            log_dir: dir.clone(),
            data_dir: dir.join("data"),
            log_level: None,
            log_messages: false,
            handle_signals: false,
        };
        std::thread::spawn(move || {
            let r = run_agent(cfg, distzero_core::conformance::registry(), StopHandle::new());
            // Only a Shutdown command may end it; anything else is a bug.
            eprintln!("the agent ended: {r:?}");
            std::process::abort();
        });
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = agent();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        wire::dial_handshake(&mut s, COOKIE.as_bytes(), "fuzz", Role::Controller)
            .await
            .expect("the agent accepts its controller");
        // Every frame the input holds, back to back, except a shutdown
        // (which ends the agent by design).
        let mut rest = data;
        while let Ok(Some((frame, used))) = decode_frame::<ToAgent>(rest) {
            rest = &rest[used..];
            let shutdown = matches!(
                frame,
                ToAgent::Cmd {
                    cmd: wire::Command::Shutdown,
                    ..
                }
            );
            if !shutdown {
                let _ = wire::write_frame(&mut s, &frame).await;
            }
        }
        // A raw tail too: a malformed frame must close this link only.
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(rest).await;
        drop(s);
        // Still up: a fresh controller is accepted.
        let mut t = tokio::net::TcpStream::connect(addr).await.unwrap();
        wire::dial_handshake(&mut t, COOKIE.as_bytes(), "fuzz", Role::Controller)
            .await
            .expect("the agent still serves");
    });
});
