//! What an end-to-end encrypted message holds once the recipient decrypted it (docs/e2e.md).
//! The server never sees it.

use serde::{Deserialize, Serialize};

use crate::MediaRef;

/// The plaintext of a message, version 1: a text, attachments (each a [`MediaRef`]: where the
/// sealed file is and the key that opens it), and the message it answers. Unknown fields are
/// ignored, so later versions can add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plaintext {
    /// The format's version: 1.
    pub v: u32,
    /// The text (with attachments: their caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Attached media.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<MediaRef>,
    /// The server id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl Plaintext {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            v: 1,
            text: Some(text.into()),
            attachments: Vec::new(),
            reply_to: None,
        }
    }
}
