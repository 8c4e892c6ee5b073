//! Messages: any serde type. They cross machines as bytes, in simulation too.

use crate::error::Result;
use serde::{de::DeserializeOwned, Serialize};

/// Anything a node can send. Implemented for every serde type.
pub trait Message: Serialize + DeserializeOwned + 'static {}
impl<T: Serialize + DeserializeOwned + 'static> Message for T {}

/// Encode a message as it crosses the wire (postcard: compact, no schema).
pub fn encode<M: Serialize + ?Sized>(msg: &M) -> Result<Vec<u8>> {
    Ok(postcard::to_allocvec(msg)?)
}

/// Decode bytes produced by [`encode`].
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M> {
    Ok(postcard::from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum Msg {
        Put(String, u64),
        Ack,
    }

    #[test]
    fn round_trip_and_garbage_is_an_error() {
        let b = encode(&Msg::Put("x".into(), 7)).unwrap();
        assert_eq!(decode::<Msg>(&b).unwrap(), Msg::Put("x".into(), 7));
        assert!(decode::<Msg>(&[0xff, 0xff, 0xff]).is_err());
    }
}
