//! Making a [`MongoStore`]: the URL, the client, the collection and its
//! indexes.

use std::fmt;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, CollectionOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, IndexModel};

use super::doc::{EXPIRES, TTL_INDEX, USER, USER_INDEX};
use super::error::mongo_error;
use super::{BACKEND, MongoStore};
use crate::store::StoreError;

/// The database used when the URL names none.
const DEFAULT_DATABASE: &str = "cloakroom";
/// How long the driver may look for a server before an operation fails
/// (unless the URL sets `serverSelectionTimeoutMS`): short, so that a
/// down server becomes the session layer's failure policy rather than a
/// hanging request.
const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a [`MongoStore`] with non-default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::store::MongoStore;
///
/// let store = MongoStore::builder("mongodb://127.0.0.1:27017/myapp")
///     .with_collection("web_sessions")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct MongoStoreBuilder {
    source: Source,
    database: Option<String>,
    collection: String,
}

#[derive(Clone)]
enum Source {
    Url(String),
    Client(Client),
}

impl fmt::Debug for MongoStoreBuilder {
    // Never the URL: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStoreBuilder")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

impl MongoStoreBuilder {
    pub(super) fn from_url(url: &str) -> Self {
        Self {
            source: Source::Url(url.to_owned()),
            database: None,
            collection: MongoStore::DEFAULT_COLLECTION.to_owned(),
        }
    }

    pub(super) fn from_client(client: Client) -> Self {
        Self {
            source: Source::Client(client),
            database: None,
            collection: MongoStore::DEFAULT_COLLECTION.to_owned(),
        }
    }

    /// The collection sessions live in (default
    /// [`MongoStore::DEFAULT_COLLECTION`]).
    pub fn with_collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The database the collection is in. Default: the one the URL names
    /// (`mongodb://host/DB`), else the client's default database, else
    /// `cloakroom`.
    pub fn with_database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Connects, checks that the server answers (`ping`) and creates the
    /// store's two indexes if they are missing (idempotent): the TTL index
    /// and the user index.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] for a malformed URL or an index that exists
    /// with other options; [`StoreError::Unavailable`] if no server
    /// answers.
    pub async fn connect(self) -> Result<MongoStore, StoreError> {
        let client = match self.source {
            Source::Client(client) => client,
            Source::Url(url) => {
                let mut options = ClientOptions::parse(&url)
                    .await
                    .map_err(|e| StoreError::other_in(BACKEND, e))?;
                options
                    .server_selection_timeout
                    .get_or_insert(DEFAULT_SERVER_SELECTION_TIMEOUT);
                options.app_name.get_or_insert_with(|| "cloakroom".into());
                Client::with_options(options).map_err(|e| StoreError::other_in(BACKEND, e))?
            }
        };
        let db = match &self.database {
            Some(name) => client.database(name),
            None => client
                .default_database()
                .unwrap_or_else(|| client.database(DEFAULT_DATABASE)),
        };
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(mongo_error)?;
        let coll: Collection<Document> = db.collection(&self.collection);
        coll.create_indexes([ttl_index(), user_index()])
            .await
            .map_err(mongo_error)?;
        // Logout, "log out everywhere" and rotation are acknowledged by a
        // majority of the replica set before the reply: a failover right
        // after cannot bring a revoked session back.
        let majority = db.collection_with_options(
            &self.collection,
            CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .build(),
        );
        Ok(MongoStore { coll, majority })
    }
}

/// Deletes a document once the earliest date in its `exp` array has
/// passed.
fn ttl_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { EXPIRES: 1 })
        .options(
            IndexOptions::builder()
                .name(TTL_INDEX.to_owned())
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build()
}

/// The device list: only signed-in sessions have the field.
fn user_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { USER: 1 })
        .options(
            IndexOptions::builder()
                .name(USER_INDEX.to_owned())
                .sparse(true)
                .build(),
        )
        .build()
}
