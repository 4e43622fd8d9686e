//! The OpenAPI document's frame; paths come from the handlers' annotations (see `http::api`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Title, tags and the bearer security scheme.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Sealpost media API",
        description = "Resumable (tus 1.0.0 and IETF resumable-upload draft) uploads of end-to-end-encrypted media into a content-addressed store. Errors are application/problem+json with a stable `code`.",
    ),
    components(schemas(
        sealpost_proto::MediaRef,
        sealpost_proto::Thumbnail,
        sealpost_proto::ThumbnailBlob,
        sealpost_proto::ClientFrame,
        sealpost_proto::ServerFrame
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration and login with an Ed25519 identity key"),
        (name = "devices", description = "An account's devices: linking, listing, removing"),
        (name = "chat", description = "The chat WebSocket; frames in docs/protocol.md"),
        (name = "groups", description = "Groups: members and admins; messages go over the chat WebSocket"),
        (name = "keys", description = "The key directory: Olm identity, fallback and one-time keys (docs/e2e.md)"),
        (name = "uploads", description = "Resumable uploads: tus 1.0.0 and the IETF draft"),
        (name = "blobs", description = "Content-addressed downloads"),
        (name = "media", description = "Processing of plaintext previews: thumbnails and their status"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The complete document as pretty JSON (what `sealpost openapi` prints).
pub fn spec_json() -> String {
    let (_, spec) = crate::http::api().split_for_parts();
    let mut json = spec.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
