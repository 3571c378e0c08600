//! [`SessionValue`]: a struct kept whole in the session under one key.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A struct kept whole in the session under one key. With the `axum`
/// feature, the `SessionData<T>` extractor reads and writes it; without, use
/// [`Session::get`](crate::Session::get) and
/// [`Session::insert`](crate::Session::insert) with [`SessionValue::KEY`].
///
/// ```
/// use cloakroom::SessionValue;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Cart {
///     items: Vec<u32>,
/// }
///
/// impl SessionValue for Cart {
///     const KEY: &'static str = "cart";
/// }
/// ```
pub trait SessionValue: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// The session key the value lives under.
    const KEY: &'static str;
}
