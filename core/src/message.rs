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

/// Encode a message and hand its bytes to `f` without allocating when it is
/// small: the bytes go to a stack buffer first, to the heap only if they do
/// not fit. The same bytes as [`encode`].
#[inline]
pub fn encode_with<M: Serialize + ?Sized, R>(msg: &M, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let mut buf = [0u8; STACK_BUFFER];
    match postcard::to_slice(msg, &mut buf) {
        Ok(bytes) => Ok(f(bytes)),
        Err(postcard::Error::SerializeBufferFull) => Ok(f(&encode(msg)?)),
        Err(e) => Err(e.into()),
    }
}

/// Messages up to this size are encoded on the stack by [`encode_with`].
pub const STACK_BUFFER: usize = 256;

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
        let e = decode::<Msg>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            matches!(&e, crate::Error::Codec(_))
                && e.to_string()
                    .starts_with("could not encode or decode a message: "),
            "{e:?}"
        );
    }

    #[test]
    fn encode_with_gives_the_bytes_of_encode_small_or_large() {
        for n in [0, 1, 200, STACK_BUFFER, 10 * STACK_BUFFER] {
            let m = Msg::Put("y".repeat(n), n as u64);
            let b = encode_with(&m, |b| b.to_vec()).unwrap();
            assert_eq!(b, encode(&m).unwrap());
            assert_eq!(decode::<Msg>(&b).unwrap(), m);
        }
    }
}
