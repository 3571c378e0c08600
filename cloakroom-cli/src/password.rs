//! Password hashing for the demo: Argon2id with the crate's default
//! parameters, PHC strings, random salts from the OS.
//!
//! Hashing is deliberately slow (tens of milliseconds and about 19 MiB of
//! memory each), so it runs on Tokio's blocking pool, and a semaphore caps
//! how many hashes run at once: a flood of login attempts queues up instead
//! of exhausting memory.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The operating system's random generator failed.
    #[error("could not draw a random salt: {0}")]
    Random(String),
    /// Argon2 refused the input (never expected with the default
    /// parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task running the hash panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The hashing limiter was closed (never expected).
    #[error("password hashing is shutting down")]
    Closed,
}

/// Hashes passwords off the async threads, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    /// A hash of a random password, checked against when a username is
    /// unknown so that the answer takes as long as for a known one.
    dummy_hash: Arc<str>,
}

impl PasswordHasherPool {
    /// A pool running at most `concurrency` hashes at once (at least one).
    /// Computes the dummy hash used for unknown usernames.
    ///
    /// # Errors
    ///
    /// [`PasswordError`] if the dummy hash cannot be computed.
    pub async fn new(concurrency: usize) -> Result<Self, PasswordError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| PasswordError::Random(e.to_string()))?;
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(&secret)).await??;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    /// The PHC string of `password` under a fresh random salt.
    ///
    /// # Errors
    ///
    /// [`PasswordError`] if the salt or the hash could not be made.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(move || hash_blocking(password.as_bytes())).await?
    }

    /// Whether `password` matches `stored` (a PHC string). With `None`
    /// (unknown user) checks against the dummy hash and answers `false`, in
    /// about the same time.
    ///
    /// An unparsable stored hash counts as a mismatch (and is logged).
    ///
    /// # Errors
    ///
    /// [`PasswordError`] if the blocking task failed.
    pub async fn verify(
        &self,
        stored: Option<String>,
        password: String,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched =
            tokio::task::spawn_blocking(move || verify_blocking(&hash, password.as_bytes()))
                .await?;
        Ok(known && matched)
    }
}

fn hash_blocking(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(stored: &str, password: &[u8]) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "stored password hash is not a valid PHC string");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() -> Result<(), PasswordError> {
        let pool = PasswordHasherPool::new(2).await?;
        let h1 = pool.hash("correct horse".into()).await?;
        let h2 = pool.hash("correct horse".into()).await?;
        assert!(h1.starts_with("$argon2id$"), "{h1}");
        assert_ne!(h1, h2, "salts must differ");
        assert!(
            pool.verify(Some(h1.clone()), "correct horse".into())
                .await?
        );
        assert!(!pool.verify(Some(h1), "wrong horse".into()).await?);
        assert!(!pool.verify(Some("not a hash".into()), "x".into()).await?);
        assert!(!pool.verify(None, "correct horse".into()).await?);
        Ok(())
    }
}
