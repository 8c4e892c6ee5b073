//! Every frame decoder on arbitrary bytes: never a panic, never an
//! allocation beyond the frame limit; what decodes encodes back to a frame
//! that decodes to the same value (compared as bytes: a float may be NaN).
#![no_main]

use distzero_real::wire::{decode_frame, encode_frame, FromAgent, Handshake, PeerFrame, ToAgent};
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

fn check<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + Debug,
{
    if let Ok(Some((value, used))) = decode_frame::<T>(data) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        encode_frame(&value, &mut once).expect("a decoded value encodes");
        let (back, _) = decode_frame::<T>(&once)
            .expect("its own encoding decodes")
            .expect("a whole frame");
        let mut twice = Vec::new();
        encode_frame(&back, &mut twice).expect("it encodes again");
        assert_eq!(once, twice, "{value:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Handshake>(data);
    check::<ToAgent>(data);
    check::<FromAgent>(data);
    check::<PeerFrame>(data);
});
