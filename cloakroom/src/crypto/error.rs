//! Why sealing or opening failed.

/// Why a sealed or signed value was refused.
///
/// Every variant is decided from what the presenter already knows (length,
/// encoding, format byte, the public key id) or is the bare fact that
/// authentication failed: none tells an attacker how close a forgery came.
/// Handle them all alike, as "no session" (fail closed, S38); the variants
/// exist for logs and metrics, for instance to count cookies still sealed
/// under a retired key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN); refused before
    /// decoding.
    #[error("sealed value is too long")]
    TooLarge,
    /// Not canonical unpadded base64url, or too short to hold an envelope.
    #[error("sealed value is malformed")]
    Malformed,
    /// The format byte is not one this build opens in this mode.
    #[error("sealed value has an unknown format")]
    UnknownFormat,
    /// Sealed under a key that is not (or no longer) in the key ring.
    #[error("sealed value names a key that is not in the key ring")]
    UnknownKey,
    /// Authentication failed: the value was altered, truncated or extended,
    /// or belongs to another cookie name or purpose (S31, S32).
    #[error("sealed value failed authentication")]
    Rejected,
}

/// Why a value could not be sealed or signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The result would be longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN)
    /// characters, which [`Keyring::open`](super::Keyring::open) refuses.
    #[error("sealed value of {len} characters would exceed the {max}-character limit")]
    TooLarge {
        /// Characters the result would have.
        len: usize,
        /// The limit, [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN).
        max: usize,
    },
    /// The operating system's random number generator failed, so no nonce
    /// could be drawn.
    #[error("the operating system's random number generator failed")]
    Random,
}
