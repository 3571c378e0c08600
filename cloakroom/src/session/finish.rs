//! The end of a request: save, touch or re-seal, then the cookie.

use http::StatusCode;

use super::handle::Session;
use super::mode::Mode;
use super::state::{CookieAction, Outcome};
use super::visitor::Presented;

impl Session {
    /// Saves, touches or does nothing, after the handler's response is
    /// built; returns what to add to the response.
    pub(crate) async fn finish(&self, status: StatusCode) -> Outcome {
        let server_error = status.is_server_error();
        let mut state = self.inner.state.lock().await;
        if state.finished {
            return Outcome {
                set_cookies: Vec::new(),
                failure: None,
                invalid_cookie: false,
            };
        }
        state.finished = true;
        if status.is_redirection() || status.is_client_error() || server_error {
            // The response does not show the page the flash messages were
            // read for: they stay for the next request.
            let state = &mut *state;
            state.flash.restore_taken(&mut state.pending);
        }
        let ctx = &self.inner.ctx;
        let dirty = !state.pending.is_empty();
        if server_error {
            // The handler failed half-way: its values are not kept, though
            // a sign-in or sign-out that already happened still shows in
            // the cookie.
            if dirty {
                tracing::debug!("not saving session changes of a 5xx response");
            }
        } else if dirty || state.loaded {
            if !state.loaded {
                // Writes without reads: load now so the changes merge into
                // the stored record rather than replace it. A failure is
                // recorded for the layer's policy.
                let _ = self.ensure_loaded(&mut state).await;
            }
            let (presented, _) = self.presented();
            ctx.engine
                .finish(&ctx.config, presented, &mut state, dirty)
                .await;
        }
        // An untouched session gets here without its cookie parsed.
        let set_cookies = if state.cookie == CookieAction::None {
            Vec::new()
        } else {
            let chunks = self.presented().1;
            ctx.engine.set_cookies(&ctx.config, chunks, &mut state)
        };
        // Only a session that was read has its cookie judged.
        let invalid_cookie = state.invalid_cookie
            || (state.loaded && matches!(self.presented().0, Presented::Rejected));
        Outcome {
            set_cookies,
            failure: state.failure.clone(),
            invalid_cookie,
        }
    }
}
