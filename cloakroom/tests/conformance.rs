//! The public conformance suite against the stores that need no server.

#![allow(clippy::unwrap_used)]

mod memory {
    cloakroom::conformance_tests!(cloakroom::store::MemoryStore::new());
}

mod memory_small {
    // A store at its bound still keeps every guarantee.
    cloakroom::conformance_tests!(cloakroom::store::MemoryStore::with_limits(
        64 * 8,
        cloakroom::store::MemoryStore::DEFAULT_MAX_BYTES
    ));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    fn store() -> cloakroom::store::SqliteStore {
        // Each test gets its own file; the directory is leaked on purpose so
        // it outlives the store's writer thread.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        cloakroom::store::SqliteStore::open(dir.join("sessions.db")).expect("open SQLite store")
    }
    cloakroom::conformance_tests!(store());
}

mod file {
    fn store() -> cloakroom::store::FileStore {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        cloakroom::store::FileStore::open(dir).expect("open file store")
    }
    cloakroom::conformance_tests!(store());
}

mod tiered_per_process_cache {
    use std::sync::Arc;
    cloakroom::conformance_tests!(cloakroom::store::TieredStore::new(
        Arc::new(cloakroom::store::MemoryStore::new()),
        Arc::new(cloakroom::store::MemoryStore::new()),
    ));
}

#[cfg(feature = "sqlite")]
mod tiered_over_sqlite {
    use std::sync::Arc;
    fn store() -> cloakroom::store::TieredStore {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let durable =
            cloakroom::store::SqliteStore::open(dir.join("t.db")).expect("open SQLite store");
        cloakroom::store::TieredStore::new(
            Arc::new(cloakroom::store::MemoryStore::new()),
            Arc::new(durable),
        )
    }
    cloakroom::conformance_tests!(store());
}
