//! The one canonical binary encoding: bincode 2 with a single fixed configuration.
//!
//! Everything that is hashed or signed is encoded here, so two nodes that hold the same
//! value always hash the same bytes. The configuration is fixed-width big-endian
//! integers (no varints: every value has exactly one encoding) and a decode limit, so a
//! hostile length prefix cannot make a node allocate gigabytes.

use bincode::config::{self, BigEndian, Configuration, Fixint, Limit};
use bincode::{Decode, Encode};

/// The largest input [`decode`] accepts, and the most it will allocate while decoding.
pub const DECODE_BYTES_MAX: usize = 64 * 1024 * 1024;

type Canonical = Configuration<BigEndian, Fixint, Limit<DECODE_BYTES_MAX>>;

const fn canonical() -> Canonical {
    config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<DECODE_BYTES_MAX>()
}

/// Why bytes could not be decoded into a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("input of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{extra} trailing bytes after the encoded value")]
    TrailingBytes { extra: usize },
}

/// Encodes a value canonically.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a growable Vec has no failure mode for our derived types: the
    // writer never runs out of space and none of our types has a fallible Encode.
    bincode::encode_to_vec(value, canonical()).expect("canonical encoding into a Vec")
}

/// Appends a value's canonical encoding to `out`. A struct's encoding is its fields'
/// encodings in order, so appending each field builds the struct's.
pub fn encode_append<T: Encode>(value: &T, out: &mut Vec<u8>) {
    /// Appends to the vector.
    struct Append<'a>(&'a mut Vec<u8>);
    impl bincode::enc::write::Writer for Append<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    // As for `encode`: no failure mode for our types, and this writer never fails.
    bincode::encode_into_writer(value, Append(out), canonical())
        .expect("canonical encoding into a Vec");
}

/// The length of a value's canonical encoding, counted without building it.
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    /// Counts bytes instead of keeping them.
    struct Counter(usize);
    impl bincode::enc::write::Writer for Counter {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0 += bytes.len();
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // As for `encode`: no failure mode for our types, and this writer never fails.
    bincode::encode_into_writer(value, &mut counter, canonical())
        .expect("canonical encoding into a counter");
    counter.0
}

/// Decodes exactly one value from `bytes`; trailing bytes and truncated input are errors.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > DECODE_BYTES_MAX {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: DECODE_BYTES_MAX,
        });
    }
    let (value, read) = bincode::decode_from_slice(bytes, canonical()).map_err(|e| {
        // A length past the platform's usize (4 bytes in the browser's WebAssembly, 8
        // here) is past the decode limit on every platform: one message for both, so
        // every verifier names a bad file alike.
        let e = match e {
            bincode::error::DecodeError::OutsideUsizeRange(_) => {
                bincode::error::DecodeError::LimitExceeded
            }
            e => e,
        };
        CodecError::Malformed(e.to_string())
    })?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - read,
        });
    }
    Ok(value)
}
