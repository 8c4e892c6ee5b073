//! Both sides of the handshake against an adversary that sends arbitrary
//! bytes: each side ends (accepts, refuses or fails) without a panic, and
//! the adversary is never accepted, since it cannot know the cookie.
#![no_main]

use distzero_core::ids::MachineId;
use distzero_real::wire::{accept_handshake, dial_handshake, Role};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

const COOKIE: &[u8] = b"fuzz-cookie-0123456789abcdef0123456789";

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The adversary dials an agent.
        let (mut agent_side, mut adversary) = tokio::io::duplex(1 << 16);
        adversary.write_all(data).await.unwrap();
        adversary.shutdown().await.unwrap();
        let accepted = accept_handshake(&mut agent_side, COOKIE, "run", MachineId(1)).await;
        assert!(accepted.is_err(), "a stranger was accepted: {accepted:?}");
        // An agent dials the adversary.
        let (mut dialer_side, mut adversary) = tokio::io::duplex(1 << 16);
        adversary.write_all(data).await.unwrap();
        adversary.shutdown().await.unwrap();
        let dialed = dial_handshake(&mut dialer_side, COOKIE, "run", Role::Controller).await;
        assert!(dialed.is_err(), "an impostor was accepted: {dialed:?}");
    });
});
