//! `GET /api/flash`: the page's notices, taken from the session.

use axum::Json;
use cloakroom::flash::{Flash, FlashMessage};

use crate::api::ApiResult;

/// `GET /api/flash`: the session's flash messages (`[{"level", "text"}]`,
/// oldest first), consumed. Anonymous visitors get `[]`.
pub(crate) async fn take(flash: Flash) -> ApiResult<Json<Vec<FlashMessage>>> {
    Ok(Json(flash.messages().await?))
}
