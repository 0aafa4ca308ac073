//! Fixed-size byte strings that people see as lower-case hex (in JSON, logs and the CLI)
//! and that the codec sees as raw bytes.

/// Why a hex string could not be read as a fixed-size byte string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HexError {
    #[error("expected {expected} hex characters, found {found}")]
    BadLength { expected: usize, found: usize },
    #[error("not hex: {0}")]
    NotHex(String),
}

/// Parses exactly `N` bytes from hex (upper or lower case).
pub fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    if text.len() != 2 * N {
        return Err(HexError::BadLength {
            expected: 2 * N,
            found: text.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| HexError::NotHex(e.to_string()))?;
    Ok(out)
}

/// Declares `Display`, `Debug`, `FromStr` and hex serde for a newtype over `[u8; N]`.
macro_rules! hex_newtype {
    ($name:ident, $len:expr) => {
        impl $name {
            /// The length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lower-case hex, as shown to people.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..16])
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::hex_bytes::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::hex_bytes::parse_hex::<$len>(s).map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use hex_newtype;
