//! The bytes of one message in flight. Small messages (most of a protocol's
//! traffic) are kept inline in the event, so sending one allocates nothing;
//! larger ones own an exact-size heap buffer.

/// Longest message kept inline.
pub(crate) const INLINE: usize = 22;

#[derive(Clone)]
pub(crate) enum Payload {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

// One word more than a slice pointer: events stay small in the queue.
const _: () = assert!(std::mem::size_of::<Payload>() <= 24);

impl Payload {
    #[inline(always)]
    pub fn from_slice(bytes: &[u8]) -> Payload {
        let n = bytes.len();
        if n <= INLINE {
            // Fixed-size (overlapping) copies: no call to memcpy for a few bytes.
            let mut data = [0u8; INLINE];
            if n >= 16 {
                data[..16].copy_from_slice(&bytes[..16]);
                data[n - 16..n].copy_from_slice(&bytes[n - 16..]);
            } else if n >= 8 {
                data[..8].copy_from_slice(&bytes[..8]);
                data[n - 8..n].copy_from_slice(&bytes[n - 8..]);
            } else if n >= 4 {
                data[..4].copy_from_slice(&bytes[..4]);
                data[n - 4..n].copy_from_slice(&bytes[n - 4..]);
            } else {
                for (d, b) in data.iter_mut().zip(bytes) {
                    *d = *b;
                }
            }
            Payload::Inline { len: n as u8, data }
        } else {
            Payload::Heap(bytes.into())
        }
    }

    #[inline]
    pub fn from_vec(bytes: Vec<u8>) -> Payload {
        if bytes.len() <= INLINE {
            Payload::from_slice(&bytes)
        } else {
            Payload::Heap(bytes.into_boxed_slice())
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline { len, data } => &data[..*len as usize],
            Payload::Heap(b) => b,
        }
    }

    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Inline { .. } => self.as_slice().to_vec(),
            Payload::Heap(b) => b.into_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_size() {
        for n in (0..=INLINE + 2).chain([1000]) {
            let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
            assert_eq!(Payload::from_slice(&v).as_slice(), &v[..]);
            assert_eq!(Payload::from_vec(v.clone()).as_slice(), &v[..]);
            assert_eq!(Payload::from_vec(v.clone()).into_vec(), v);
            assert_eq!(
                matches!(Payload::from_slice(&v), Payload::Inline { .. }),
                n <= INLINE
            );
        }
    }
}
